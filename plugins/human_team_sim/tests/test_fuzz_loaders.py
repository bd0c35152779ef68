"""Fuzzing the CSV loaders (issue 15): any file content gives a table or an `InputError`."""
import gzip
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xcorr_core.errors import XcorrError
from xcorr_human_team_sim.loading import load_ai_predictions, load_trials

HEADER = "UID,Query,Method,ClassifierCorrectness,ConfidenceScore,Correctness"
cells = st.sampled_from(["", "0", "1", "2", "0.5", "nan", "inf", "-1", "x", "True", "é", '"', "1,2", "\x00"])
rows = st.lists(st.lists(cells, min_size=0, max_size=7).map(lambda r: ",".join(r)), max_size=5)
headers = st.sampled_from([HEADER, "a_correct,a_conf", "a_correct,a_conf,b_correct,b_conf", "", "UID;Query", HEADER + ",a_correct,a_conf"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=headers, body=rows, raw=st.one_of(st.none(), st.binary(max_size=40)), gz=st.booleans())
def test_loaders_give_a_table_or_a_typed_error(tmp_path_factory, header, body, raw, gz) -> None:
    data = raw if raw is not None else ("\n".join([header] + body) + "\n").encode("utf-8")
    path = tmp_path_factory.mktemp("csv") / ("t.csv.gz" if gz else "t.csv")
    path.write_bytes(gzip.compress(data) if gz and raw is None else data)
    for load in (load_trials, load_ai_predictions):
        try:
            load(path)
        except XcorrError:
            pass


def test_bom_files_load_and_bad_bytes_are_located_in_the_file(tmp_path: Path) -> None:
    """Issue 27 item 6: a UTF-8 file with a byte-order mark was refused as "missing column 'UID'", and
    the reported byte of a non-UTF-8 file was the decoder chunk's offset, not the file's."""
    import pytest

    from xcorr_core.errors import InputError

    rows = [f"{u},{q},m,1,0.9,1" for u in range(40) for q in range(60)]  # well past the decoder's 8 KB chunk
    text = "\n".join([HEADER] + rows) + "\n"
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (tmp_path / "plain.csv").write_bytes(text.encode())
    assert len(load_trials(tmp_path / "bom.csv").user) == len(load_trials(tmp_path / "plain.csv").user) == 2400
    data = bytearray(text.encode())
    at = data.index(b"\n", 30_000) + 3  # inside a row well past the first chunk
    data[at] = 0xFF
    line = data[:at].count(b"\n") + 1
    for name, payload in (("bad.csv", bytes(data)), ("bad.csv.gz", gzip.compress(bytes(data)))):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(InputError, match=rf"byte {at}, line {line}\)"):
            load_trials(tmp_path / name)
