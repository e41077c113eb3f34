"""prm: trace records and formats, reward models, training, scoring and the `prm` CLI.

`prm` is the base package: `completers`, `annotate` and `evals` import it, never the
other way round at import time (the CLI imports a subcommand's module only when run).
"""

from prm.errors import RecordError
from prm.records import Rollouts, Step, Trace, Verdict

__all__ = ["RecordError", "Rollouts", "Step", "Trace", "Verdict"]
__version__ = "0.1.0"
