"""A number given on the command line is finite: `nan`, `inf` or `1e400` for an option that takes a number is an
error naming the option, exit 2, before any work starts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from charter.cli import main

SPELLINGS = st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400"])
#: Commands with a number option, the option last, each refused before it reads anything.
COMMANDS = {
    "--progress-interval": ["--progress-interval", "{}", "status", "no-such-run"],
    "--temperature": ["generate", "-p", "hi", "--temperature", "{}"],
    "--target-width": ["agreement", "report", "no-such-run", "--target-width", "{}"],
}


@settings(max_examples=40, deadline=None)
@given(option=st.sampled_from(sorted(COMMANDS)), spelled=SPELLINGS)
def test_a_number_option_that_is_not_finite_is_one_line_and_exit_2(option: str, spelled: str) -> None:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([part.format(spelled) for part in COMMANDS[option]])
    said = err.getvalue().strip().splitlines()[-1]  # a usage error of click's comes after its usage lines
    assert code == 2 and option.lstrip("-").replace("-", "_") in said.replace("-", "_"), said
    assert "no-such-run" not in said and ("finite" in said or "Input should be" in said), said
