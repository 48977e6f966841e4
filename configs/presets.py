"""What every config file's presets share: the names every file knows, and refusing the rest."""

COMMON = ("", "cpu", "test")  # full size, a 2-core CPU, seconds for the test suite


def check(preset: str, own: tuple[str, ...] = ()) -> None:
  """Refuses a preset that is neither common nor one of the file's `own` (e.g. 'cifar10')."""
  if preset not in COMMON + own:
    raise ValueError(f"Unknown preset {preset!r}; use one of "
                     f"{', '.join(map(repr, COMMON + own))}.")
