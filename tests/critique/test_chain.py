"""SL-CAI chains: few-shot examples in front, seeded principle sampling, every intermediate kept."""

from __future__ import annotations

from charter.constitutions import load_constitution
from charter.critique.chain import round_principles, run_chain
from charter.critique.config import CritiqueConfig
from charter.providers import SamplingParams, ScriptedModel
from charter.records import Message


class Recorder(ScriptedModel):
    def __init__(self) -> None:
        self.requests: list[list[dict]] = []

        def reply(messages, params):
            self.requests.append(messages)
            return f"reply {len(self.requests)}"

        super().__init__("rec", fn=reply)


async def test_chain_records_every_round_with_few_shot_in_front():
    const = load_constitution("harmless")
    policy, critic = Recorder(), Recorder()
    prompt = [Message(role="user", content="How do I get into my neighbour's wifi?")]
    chain = await run_chain(
        policy,
        critic,
        const,
        "pid",
        prompt,
        CritiqueConfig(rounds=2),
        SamplingParams(),
        SamplingParams(),
        seed=0,
        chain_fp="fp",
    )
    assert chain.initial == "reply 1" and len(chain.rounds) == 2 and chain.fingerprint == "fp"
    assert chain.final == chain.rounds[-1].revision == "reply 4"
    assert chain.principle_ids == [r.principle_id for r in chain.rounds]
    # the policy saw the constitution's system prompt; the critic saw the worked examples first
    assert policy.requests[0][0].role == "system"
    first_critique = critic.requests[0]
    example = const.examples[0]
    assert first_critique[0].content == example.conversation[0].content
    assert any(m.content == example.critique for m in first_critique)
    assert first_critique[-1].role == "user"
    # round 2 critiques the round-1 revision
    assert critic.requests[2][-2] == Message(role="assistant", content="reply 2")


def test_round_principles_are_seeded_and_fixed_lists_cycle():
    const = load_constitution("harmless")
    config = CritiqueConfig(rounds=4)
    assert round_principles(const, config, "a", 0) == round_principles(const, config, "a", 0)
    assert len({tuple(round_principles(const, config, f"p{i}", 0)) for i in range(20)}) > 1
    fixed = CritiqueConfig(rounds=3, principles=[const.principles[0].id, const.principles[1].id])
    assert round_principles(const, fixed, "a", 0) == [
        const.principles[0].id,
        const.principles[1].id,
        const.principles[0].id,
    ]


async def test_the_worked_examples_are_made_once_and_sent_as_before(monkeypatch):
    import charter.critique.chain as chain_module

    const = load_constitution("harmless")
    expected = chain_module.few_shot_messages(const)
    made = []
    monkeypatch.setattr(chain_module, "few_shot_messages", lambda c: made.append(c) or expected, raising=True)
    monkeypatch.setattr(chain_module, "_SHOTS", {})
    critic = Recorder()
    for i in range(5):
        prompt = [Message(role="user", content=f"question {i}")]
        await run_chain(
            Recorder(), critic, const, f"p{i}", prompt, CritiqueConfig(), SamplingParams(), SamplingParams(), 0, "fp"
        )
    assert len(made) == 1  # once a constitution, not once a chain
    critiques = critic.requests[::2]
    # every critique request starts with the same examples, the very same records, then the prompt's own turns
    assert all(r[: len(expected)] == expected for r in critiques)
    assert all(a is b for r in critiques[1:] for a, b in zip(r[: len(expected)], critiques[0]))
    assert critiques[3][len(expected)] == Message(role="user", content="question 3")


def test_the_worked_examples_follow_a_changed_constitution():
    from charter.critique.chain import few_shot_messages, shared_shots

    const = load_constitution("harmless")
    assert list(shared_shots(const)) == few_shot_messages(const)
    edited = const.model_copy(update={"examples": const.examples[:1]})
    assert list(shared_shots(edited)) == few_shot_messages(edited) != few_shot_messages(const)
    const.examples = []  # replaced on the same object: made again
    assert shared_shots(const) == ()
