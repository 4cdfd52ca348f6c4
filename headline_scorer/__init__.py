"""headline-scorer: the command-line entry point over the training, export and stream packages."""

from pathlib import Path

SAMPLE_DATA = Path(__file__).resolve().parent / "sample_data"
