"""Released official DeGMix checkpoints -> run folders of this package.

`checkpoint_file` reads the Lightning file safely, `head_keys` maps the official head's keys to ours,
`importer` writes the run folder (`import_official`).
"""

from .checkpoint_file import OfficialCheckpoint, read_official_checkpoint
from .head_keys import HEAD_KEY_TABLE, convert_head_state, official_tasks
from .importer import ImportResult, import_official

__all__ = [
    "HEAD_KEY_TABLE", "ImportResult", "OfficialCheckpoint", "convert_head_state", "import_official", "official_tasks",
    "read_official_checkpoint",
]
