"""Training, from the repository: ``python train.py task=... model=... dataset=...`` (see README, "Tasks").

The same command is installed as ``ravlt-train`` (``python -m ravlt.train``).
"""
from ravlt.train import main

if __name__ == "__main__":
    main()
