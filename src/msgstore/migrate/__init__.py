"""``msgstore migrate``: bring mail in from what a site ran before.

Sources (each a list of folders yielding messages): mbox files (:mod:`.mbox`), Maildir++ trees
(:mod:`.maildir`), a remote IMAP account (:mod:`.imapsrc`); POP-only accounts of this store
become full accounts in place (:mod:`.pop`). :mod:`.engine` puts messages into the store
through the one durable path, skipping what is already there; :mod:`.run` adds accounts and
forwarding from the old home around it. docs/migration.md has the whole picture.
"""

from msgstore.migrate.engine import Options, Quiet, Reporter
from msgstore.migrate.model import Problem, Source, SourceFolder, SourceMessage, Summary
from msgstore.migrate.run import Forwarding, Job, run_jobs

__all__ = [
    "Forwarding",
    "Job",
    "Options",
    "Problem",
    "Quiet",
    "Reporter",
    "Source",
    "SourceFolder",
    "SourceMessage",
    "Summary",
    "run_jobs",
]
