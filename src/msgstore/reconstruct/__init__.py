"""``msgstore reconstruct``: rebuild damaged account indexes from their message files.

The engine (:mod:`.engine`) is a library the CLI (and later the web admin) calls; the work that
needs to understand a backend's files is the backend's (``SupportsReconstruct``,
``Feature.RECONSTRUCT``). :mod:`.report` renders the result, one line per discrepancy.
"""

from msgstore.reconstruct.engine import reconstruct, reconstruct_all
from msgstore.reconstruct.report import report_json, report_lines

__all__ = ["reconstruct", "reconstruct_all", "report_json", "report_lines"]
