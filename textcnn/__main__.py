"""`python -m textcnn`: the command line, so that `torchrun -m textcnn train RECIPE` starts it."""

from textcnn.cli import main

if __name__ == "__main__":  # pragma: no cover - the command line itself
    main()
