"""Start `charter serve reward` with the test judges registered: `python -m tests.serve.launch ARGS...`."""

import sys

import tests.support.garbled  # noqa: F401 - registers scripted:garbled-pairs
from charter.cli import main
from charter.judge_prompt import read_rating
from charter.providers.scripted import _cai, _cai_choice, register_script
from charter.testing.lab import register_lab_models
from tests.support.priority import register_priority_judge


def _flaky(messages, params):  # noqa: ANN001, ANN202 - rates responses that mention "ok", fails the rest
    rated = read_rating(messages[-1].content)
    if rated is not None and "ok" not in rated:
        return "I would rather not say."
    return _cai(messages, params)


register_script("serve-flaky", _flaky, _cai_choice)
register_lab_models()  # scripted:checklist-judge
register_priority_judge()  # scripted:prefers-word, scripted:long-answer

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
