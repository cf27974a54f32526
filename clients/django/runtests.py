#!/usr/bin/env python3
"""Runs the test suite with Django's test runner (an in-memory sqlite database).

The tests talk to running nanocdn nodes described by environment variables
(tests/live.py), so run them through the project's test command, which starts
the nodes:  npx vitest run test/clients/django.test.ts
Arguments are test labels, e.g. tests.test_failover. Without any, the tests/test_*.py
modules run; tests.cluster_kill (which SIGKILLs node 1) runs only when named.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    sys.path.insert(0, HERE)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings
    from django.test.utils import get_runner

    django.setup()
    runner = get_runner(settings)(verbosity=2)
    failures = runner.run_tests(sys.argv[1:] or ["tests"])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
