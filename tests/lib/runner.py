"""Run one suite of unittest modules and print its tally.

usage: runner.py SUITE DIR [pattern]
Prints every failure in full, then 'suite SUITE: N passed, N failed' as the
last line (tests/run.sh sums these lines).
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    suite_name, directory = sys.argv[1], sys.argv[2]
    pattern = sys.argv[3] if len(sys.argv) > 3 else "test_*.py"
    loader = unittest.TestLoader()
    suite = loader.discover(directory, pattern=pattern, top_level_dir=directory)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped)
    print("suite %s: %d passed, %d failed" % (suite_name, passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
