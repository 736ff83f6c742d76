from harness.cli import main

if __name__ == "__main__":  # children started by the forkserver re-import this module
    raise SystemExit(main())
