"""Run one suite of unittest modules and print its tally.

usage: runner.py SUITE DIR [pattern]
Every test method counts once, except that a method with subtests counts
each subtest instead. Failures are printed in full, then
'suite SUITE: N passed, N failed' as the last line (tests/run.sh sums them).
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class TallyResult(unittest.TextTestResult):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.tally_pass = 0
        self.tally_fail = 0
        self._sub = {}  # test id -> [passed, failed] of its subtests

    def addSubTest(self, test, subtest, outcome):
        super().addSubTest(test, subtest, outcome)
        c = self._sub.setdefault(test.id(), [0, 0])
        c[0 if outcome is None else 1] += 1

    def stopTest(self, test):
        super().stopTest(test)
        sub = self._sub.pop(test.id(), None)
        failed_here = any(t is test for t, _ in self.failures + self.errors)
        if sub:
            self.tally_pass += sub[0]
            self.tally_fail += sub[1]
            # a failure outside the subtests counts too
            if failed_here and sub[1] == 0:
                self.tally_fail += 1
        elif any(t is test for t, _ in self.skipped):
            pass
        elif failed_here or any(t is test for t in self.unexpectedSuccesses):
            self.tally_fail += 1
        else:
            self.tally_pass += 1

    def addError(self, test, err):
        super().addError(test, err)
        # errors in setUpClass/tearDownClass arrive with a placeholder "test"
        if not isinstance(test, unittest.TestCase):
            self.tally_fail += 1


def main():
    suite_name, directory = sys.argv[1], sys.argv[2]
    pattern = sys.argv[3] if len(sys.argv) > 3 else "test_*.py"
    sys.path.insert(0, os.path.abspath(directory))
    suite = unittest.TestLoader().discover(directory, pattern=pattern, top_level_dir=directory)
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout, resultclass=TallyResult)
    result = runner.run(suite)
    if result.skipped:
        print("skipped (counted as failed: a test that cannot run proves nothing):")
        for t, why in result.skipped:
            print("  %s: %s" % (t.id(), why))
    failed = result.tally_fail + len(result.skipped)
    print("suite %s: %d passed, %d failed" % (suite_name, result.tally_pass, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
