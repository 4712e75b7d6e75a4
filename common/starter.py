"""`churn init`: a commented starting configuration for a user's own data, plus copies of the shipped playbooks
and reason texts that the configuration points at."""

from __future__ import annotations

from pathlib import Path

from common.errors import ChurnError
from common.files import replace_all
from common.resources import shipped

# written file -> the shipped file it is copied from; the starter config names the other two by these names
STARTER_FILES = {"config.yaml": "starter.yaml", "playbooks.yaml": "playbooks.yaml", "reasons.yaml": "reasons.yaml"}


def write_starter(folder: str | Path, force: bool = False) -> list[Path]:
    """Write ``config.yaml``, ``playbooks.yaml`` and ``reasons.yaml`` into ``folder`` (created when missing).

    All three are written or none: when any of them exists and ``force`` is false, nothing is written and a
    :class:`ChurnError` names the existing files. Returns the written paths.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ChurnError(f"{folder} is a file; give a folder for the configuration (it is created when missing)")
    targets = {folder / name: shipped(source) for name, source in STARTER_FILES.items()}
    existing = [str(path) for path in targets if path.exists()]
    if existing and not force:
        raise ChurnError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; nothing was "
                         "written (pass --force to overwrite them, or choose another folder)")
    replace_all({}, files={target: source.read_bytes() for target, source in targets.items()})
    return list(targets)


def next_steps(folder: str | Path) -> list[str]:
    """What to do after :func:`write_starter`, as lines for the person who ran it."""
    folder = Path(folder)
    steps = [] if folder == Path(".") else [f"cd {folder}   (data_dir: . in the config is the folder churn runs in)"]
    steps += [
        "edit config.yaml: point tables.transactions.source at your file (CSV, Parquet or a SQL table) and "
        "uncomment the other tables you have",
        "map your column names under columns: where they differ from the contract, and set date_format when your "
        "dates are not ISO 8601",
        "churn validate --config config.yaml   (rejected rows and their reasons go to quarantine/)",
        "churn run --config config.yaml   (ingest, features, training, scoring; the lists go to outputs/)",
        "reword reasons.yaml and adapt playbooks.yaml (actions, offers, costs) for your retention team",
    ]
    return [f"{number}. {step}" for number, step in enumerate(steps, start=1)]
