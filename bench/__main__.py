"""``python -m bench``: see bench/runner.py and docs/performance.md."""

from bench.runner import main

if __name__ == "__main__":
    main()
