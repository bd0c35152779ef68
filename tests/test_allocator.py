"""`retain_freed_memory`: freed large blocks are reused instead of faulted in again (glibc only)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xcorr_core.allocator import retain_freed_memory

_LOOP = """
import json, resource, sys, torch
from xcorr_core.allocator import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "retain" else False
torch.ones(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):  # a 64 MB intermediate per iteration, written, then freed
    torch.empty(16 * 2**20).fill_(1.0)
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(mode: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", _LOOP, mode], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc parameters")
def test_freed_blocks_are_reused_not_faulted_in_again() -> None:
    plain, kept = _faults("plain"), _faults("retain")
    assert kept["applied"] and not plain["applied"]
    pages = 40 * 64 * 2**20 // 4096
    if plain["faults"] < 0.5 * pages:
        pytest.skip("the kernel backs fresh blocks with huge pages here: few faults to save")
    assert plain["faults"] > 0.8 * pages  # every iteration faults its 64 MB in again
    assert kept["faults"] < 0.3 * pages  # the first few only (a freed block can be a little short of an aligned request)


def test_opt_out_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XCORR_RETAIN_MEMORY", "0")
    assert retain_freed_memory() is False


def test_the_executable_keeps_freed_memory_but_main_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """``xcorr`` (the console script, `console_main`) opts in; `cli.main`, callable in-process, never does."""
    import xcorr_core.allocator as allocator
    from xcorr_core import cli

    calls: list[bool] = []
    monkeypatch.setattr(allocator, "retain_freed_memory", lambda **kw: calls.append(True) or True)
    assert cli.main(["plugins", "--json"]) == 0 and calls == []
    monkeypatch.setattr(sys, "argv", ["xcorr", "plugins", "--json"])
    with pytest.raises(SystemExit) as exit_:
        cli.console_main()
    assert exit_.value.code == 0 and calls == [True]
