"""``[plugins.hf] auto_upload``: push a run's final checkpoint, exported to HF format, when training ends."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from apt_core.errors import APTError

__all__ = ["upload_final_checkpoint"]

log = logging.getLogger(__name__)


def upload_final_checkpoint(run_dir: str | Path, repo_id: str, *, private: bool = False) -> str:
    """Export the checkpoint ``run_dir/latest`` names into a temporary folder and push it; returns the commit URL.

    A failure does not lose the training (the checkpoint is already on disk): it is reported as one
    APTError line that says where the checkpoint is and how to push it by hand.
    """
    from apt_core.checkpoint import resolve_checkpoint

    from .export import export_checkpoint
    from .hub import push_folder

    checkpoint = resolve_checkpoint(run_dir)
    try:
        with tempfile.TemporaryDirectory(prefix="apt-hf-upload-") as tmp:
            folder = export_checkpoint(checkpoint, Path(tmp) / "export", name=repo_id)
            url = push_folder(folder, repo_id, private=private,
                              commit_message=f"Upload {checkpoint.name} (apt-model auto_upload)")
    except APTError as exc:
        raise APTError(f"training finished and {checkpoint} is saved, but auto_upload to {repo_id} failed: {exc} "
                       f"(push it later with `apt-model hf export {checkpoint} OUT --push {repo_id}`)") from None
    log.warning("auto_upload: pushed %s to %s (%s)", checkpoint, repo_id, url)
    return url
