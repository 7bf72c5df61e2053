"""Start `charter serve reward` with the test judges and the test-only `harm` scoring registered:
`python -m tests.reward.launch ARGS...`."""

import sys

import tests.serve.launch  # noqa: F401 - registers the test judges
from charter.cli import main
from charter.reward.function import register
from tests.reward.harm import HARM

register(HARM)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
