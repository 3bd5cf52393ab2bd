"""``python -m apt_core`` is ``apt-model`` (and what ``torchrun -m apt_core train`` runs)."""

from .cli import main

if __name__ == "__main__":
    main()
