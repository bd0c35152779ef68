"""Jobs: a pipeline over a whole data set, locally or on Ray, with results as a Parquet table.

`run_job` (``xcorr run``) and `build_gallery` / `eval_index` (``xcorr index build`` / ``eval``).
Ray and pyarrow are the core's optional ``[ray]`` extra; nothing here is imported by the rest of
the core, so ``import xcorr_core`` never needs them.
"""
from .gallery import build_gallery, eval_index, open_gallery
from .runner import JobReport, run_job
from .spec import JobSpec, StoreSpec
from .table import load_explanations, read_errors, read_results, result_schema

__all__ = ["run_job", "JobReport", "JobSpec", "StoreSpec", "build_gallery", "open_gallery", "eval_index", "read_results", "read_errors",
           "load_explanations", "result_schema"]
