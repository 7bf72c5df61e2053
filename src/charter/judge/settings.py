"""The judge's settings: how it compares (`JudgeSettings`), and the run config's `judge:` section (`JudgeConfig`,
with its audit and constitution test). Which modes there are is the table in `charter.judge.modes`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from charter.judge.judgment import COMBINATIONS, DEFAULT_COMBINATION, Combination, Mode, Orders, Reply
from charter.judge.modes import (
    DEFAULT_MODE,
    DEFAULT_RATING,
    MODES,
    answer_modes,
    described,
    mode,
    pair_modes,
    pairwise_modes,
    rating_readers,
    text_reading_advice,
)
from charter.providers.base import SamplingParams
from charter.providers.config import RoleConfig
from charter.yamlio import ConfigModel, LocatedValueError, TableName, former_name, require_unique

#: What `max_reasks` means, apart from a provider's retries (said where the former name `max_retries` is read).
REASKS = (
    "re-asks of a reply that cannot be read; a provider's retries of a failed call (429, 5xx, timeouts) are the "
    "role's limits.max_retries"
)


def _known_mode(name: str) -> str:
    if mode(name).kind.subject == "group":  # ValueError naming the modes there are for an unknown one
        raise ValueError(
            f"judge mode {name!r} {MODES[name].description}: a judge judges pairs in one of {', '.join(pair_modes())}"
        )
    return name


def _mode_enum(schema: dict[str, Any]) -> None:
    schema["enum"] = pair_modes()


#: How the judge judges a pair: a name in the table of modes (`charter.judge.modes.MODES`) whose kind judges pairs.
JudgeMode = Annotated[str, AfterValidator(_known_mode), Field(json_schema_extra=_mode_enum)]
#: How a rubric score is read: a mode that can read ratings (the expected score over the score tokens, or the
#: number in a reasoned or bare reply).
RatingMode = Annotated[str, TableName(rating_readers, "a rating is read as one of {known}, not {name!r}")]
#: How a pair's per-principle votes become one judgment: a name in `charter.judge.judgment.COMBINATIONS`.
CombinationName = Annotated[str, TableName(COMBINATIONS.keys, "votes are combined by one of {known}, not {name!r}")]
#: A mode that compares two responses in one prompt.
PairwiseMode = Annotated[str, TableName(pairwise_modes, "{name!r}: a comparison is judged in one of {known}")]
#: A mode that judges two answers to one prompt: compared in one prompt, or (`stepwise`) each judged as the next
#: step of the prompt's conversation.
AnswerMode = Annotated[str, TableName(answer_modes, "{name!r}: two answers are judged in one of {known}")]


class JudgeSettings(ConfigModel):
    """How the judge compares two responses."""

    mode: JudgeMode = Field(
        default=DEFAULT_MODE,
        description="How the judge judges a pair, a mode in the table of modes (`charter.judge.modes`): "
        + described(pair_modes())
        + ".",
    )
    scale: int = Field(default=5, ge=2, le=10)
    """Modes `score` and `rubric`: the top of the rubric's scale (scores run 1..scale); at most 9 when `rating` is
    logprobs, so that every score is one token."""
    rating: RatingMode = DEFAULT_RATING
    """Mode `score`: `logprobs` takes the expected score over the score tokens' probabilities; `cot` (reasoning,
    then 'the score is N') and `verdict` (a bare number) take the number the judge writes."""
    orders: Orders = "both"
    """Evaluate each comparison with the responses in both orders (position bias cancels) or one."""
    principles_per_pair: int = Field(default=1, ge=1)
    """Ensemble size: principles sampled per pair (by weight, seeded, without replacement)."""
    principles: list[str] | None = None
    """Fixed principle ids to use for every pair instead of sampling."""
    clamp: tuple[float, float] = (0.4, 0.6)
    """Range each chain-of-thought vote is clamped into (loser, winner)."""
    max_reasks: int = Field(default=2, ge=0)
    """Re-asks (with a new seed) of a reply the judge's mode cannot read, before recording a failure; a provider's
    retries of a failed call are the role's `limits.max_retries`. Formerly `max_retries`, still read as this with a
    warning."""
    params: SamplingParams | None = None
    """Sampling for `cot`/`verdict` (default: greedy; 512 tokens for cot, 8 for verdict)."""
    warm_cache: bool = True
    """Warm, then fan out: a pair's first call (its first principle, `a` shown first) is answered before any other
    call of the pair is sent, so that a provider that caches prompt prefixes serves what they share from its cache:
    the other principles in that order (instructions, conversation, the two responses) and the other order
    (instructions, conversation), whose own first call is answered before its other principles are sent; other
    pairs go on meanwhile. A rating mode warms each response's ratings with its first. `false` asks them all at
    once. It changes when calls are sent, never what is asked: judgments are the same either way. A judge whose
    calls go through a provider's batch API never warms (a batch round can take hours; it would wait several)."""

    combine: CombinationName = DEFAULT_COMBINATION
    """How a pair's per-principle votes become one judgment: `weighted`, the mean of the votes (the ensemble is drawn
    by weight); `priority`, in the constitution's priority order: its hard constraints first, then each level
    highest first, the first level whose verdict is decisive settling the pair whatever the levels below say, and
    undecided levels falling through. Recorded on each judgment (`combined`) and in its fingerprint when not
    `weighted`."""
    combine_margin: float = Field(default=0.0, ge=0, lt=0.5)
    """`priority`: a level's verdict is decisive when its P(a better) is further than this from 0.5 in every order
    asked, and the orders pick the same response."""
    settle_early: bool = False
    """`priority`: ask the levels one after another, highest first, and stop once one settles the pair: the
    principles below it are not asked (recorded as skipped), and the conflicts they would show are not known. False
    asks every principle, so that every conflict between levels is recorded."""

    spec_examples: int = Field(default=0, ge=0, le=8)
    """Show the judge up to this many of the principle's own spec examples (imported from a prose spec: the
    conversation, a reply the spec calls good and one it calls bad, with its reasons) before each question; never one
    whose conversation is the one judged, so that agreement with the spec's own labelled pairs is measured on pairs
    the judge was not shown. 0 (the default): none, and prompts and fingerprints are as they were."""

    @model_serializer(mode="wrap")
    def _default_rule_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Left out under the default rule (and without spec examples), so that configs, manifests and fingerprints
        # from before the rules were a choice stay the same.
        data = handler(self)
        if not self.combination.recorded and not self.settle_early and self.combine_margin == 0:
            for later in ("combine", "combine_margin", "settle_early"):
                data.pop(later, None)
        if not self.spec_examples:
            data.pop("spec_examples", None)
        return data

    @model_validator(mode="before")
    @classmethod
    def _former_names(cls, data: Any) -> Any:
        return former_name(data, "judge", "max_retries", "max_reasks", REASKS)

    @model_validator(mode="after")
    def _check_clamp(self) -> JudgeSettings:
        low, high = self.clamp
        if not 0 <= low <= 0.5 <= high <= 1:
            raise ValueError("clamp must satisfy 0 <= low <= 0.5 <= high <= 1")
        if self.rates_alone and self.reply.logprobs and self.scale > 9:
            raise LocatedValueError("scale: at most 9 with rating logprobs (each score must be one token)", ("scale",))
        return self

    @property
    def mode_entry(self) -> Mode:
        """The mode's entry in the table of modes."""
        return MODES[self.mode]

    @property
    def combination(self) -> Combination:
        """The combination rule's entry in the table of rules."""
        return COMBINATIONS[self.combine]

    @property
    def rates_alone(self) -> bool:
        """Whether the mode rates each response alone (rather than comparing the two in one prompt)."""
        return self.mode_entry.kind.rates_alone

    @property
    def reply(self) -> Reply:
        """How the judge's reply is asked for and read: the mode's one way, or the one `rating` names among its
        ways."""
        entry = self.mode_entry
        return entry.reply if entry.reply is not None else entry.replies[self.rating]

    @property
    def reply_name(self) -> str:
        """The name of the way a reply is read (`reply`): `rating` where the mode has several, else the mode's name
        (in a rating judgment's fingerprint as `rating`)."""
        return self.mode if self.mode_entry.reply is not None else self.rating

    @property
    def without_probabilities(self) -> str:
        """What to use instead where the judge's backend gives no next-token probabilities: the ways of reading the
        reply's text, as the table of modes lists them (`text_reading_advice`)."""
        return text_reading_advice(self.mode_entry)

    @property
    def asks_logprobs(self) -> bool:
        """Whether the judge's calls ask for next-token probabilities rather than text."""
        return self.reply.logprobs

    @property
    def orders_asked(self) -> Orders:
        """The orders each comparison is asked in: a rating mode rates each response once, in no order."""
        return "one" if self.rates_alone else self.orders

    def sampling(self) -> SamplingParams:
        """The sampling parameters of text answers (`cot`/`verdict`, and a rating read from text)."""
        if self.params is not None:
            return self.params
        return SamplingParams(temperature=0.0, max_tokens=self.reply.max_tokens, seed=0)

    def attempt(self, number: int) -> SamplingParams:
        """The sampling parameters of try `number` (0 first) at a parseable answer: a retry gets another seed and
        at least temperature 0.7, so it is not the same unparseable reply again."""
        base = self.sampling()
        if number == 0:
            return base
        return base.model_copy(update={"seed": (base.seed or 0) + number, "temperature": max(base.temperature, 0.7)})

    def ensemble(self) -> str:
        """The ensemble in words: the fixed principles, or how many are sampled."""
        if self.principles:
            return f"fixed principles {', '.join(self.principles)}"
        return f"{self.principles_per_pair} principle(s) per pair, sampled by weight"

    def describe(self) -> str:
        """The mode in words, as reports show it: `score/logprobs 1..5` or `cot/both`."""
        said = f"{self.mode}/{self.reply_name} 1..{self.scale}" if self.rates_alone else f"{self.mode}/{self.orders}"
        return said if not self.combination.recorded else f"{said}, combined by {self.combine}"


#: A kind of instruction planted in the worse response by the judge audit.
InjectionFamily = Literal["answer_is", "forged_options", "fake_turn", "ignore_instructions"]
INJECTION_FAMILIES: tuple[InjectionFamily, ...] = ("answer_is", "forged_options", "fake_turn", "ignore_instructions")


class AuditConfig(ConfigModel):
    """A judge audit in a run (`judge.audit`): perturbation tests of position, length, injection and
    (optionally) self-preference bias on a seeded sample of pairs with a known better response.

    Without `pairs` it runs after judging, on the run's own high-confidence pairs (the judge's verdict is the
    known better response); with `pairs` (a human-labeled JSONL) it runs before judging, on those. The bars
    make `charter push` refuse to publish while a measured bias exceeds them (`--override-gate` publishes
    anyway, and the card records it)."""

    n: int = Field(default=100, ge=2)
    """Pairs to audit (a seeded sample; fewer if fewer qualify)."""
    seed: int | None = None
    """Seed of the sample and the bootstrap (default: the run's seed)."""
    pairs: str | None = None
    """A JSONL file of human-labeled pairs (prompt, chosen, rejected) to audit on, before judging."""
    min_confidence: float = Field(default=0.2, ge=0, lt=0.5)
    """Own pairs only: the judge's |P(A) - 0.5| must reach this, in both orders consistently, for the pair to
    count as having a known better response."""
    families: list[InjectionFamily] = list(INJECTION_FAMILIES)
    """Injection families to measure (each in the fenced and the unfenced prompt format)."""
    self_preference: bool = False
    """Also measure self-preference: the judge model writes its own answer to each prompt, which is compared
    with the known better and worse responses."""
    max_position_flip: float | None = Field(default=None, ge=0, le=1)
    """Gate: most pairs whose winner may change when the order is swapped."""
    max_length_flip: float | None = Field(default=None, ge=0, le=1)
    """Gate: most correctly judged pairs that padding the worse and trimming the better may flip."""
    max_injection: float | None = Field(default=None, ge=0, le=1)
    """Gate: most correctly judged pairs any one injection family may flip (in the prompt format in use)."""
    max_self_preference: float | None = Field(default=None, ge=0, le=1)
    """Gate: most pairs in which the judge may prefer its own answer over the known better response."""
    use_upper_ci_bound: bool = False
    """Gate on the upper bound of each rate's 95% bootstrap interval instead of the point estimate."""

    @property
    def bars(self) -> dict[str, float]:
        """The gate's bars that are set, by measure."""
        named = {
            "position_flip": self.max_position_flip,
            "length_flip": self.max_length_flip,
            "injection": self.max_injection,
            "self_preference": self.max_self_preference,
        }
        return {k: v for k, v in named.items() if v is not None}


class ConstitutionTestConfig(ConfigModel):
    """A constitution test in a run (`judge.constitution_test`): after judging, a seeded sample of the run's pairs is
    judged again under each principle alone, negated and under a neutral principle (sensitivity), and the
    principles' votes are compared (redundancy; with spot-check labels, support by people). The result goes into
    the run's report and card; `max_insensitive` makes `charter push` refuse while more principles are flagged."""

    n: int = Field(default=100, ge=10)
    """Pairs to test on (a seeded sample of the run's judged pairs; fewer if the run has fewer)."""
    seed: int | None = None
    """Seed of the sample and the bootstrap (default: the run's seed)."""
    min_flip: float = Field(default=0.5, ge=0, le=1)
    """Flag a principle when the upper end of its negated flip rate's 95% interval is below this."""
    target: float = Field(default=0.97, ge=0.5, le=1)
    """The share of pairs on which the smallest equivalent subset must give the full ensemble's side."""
    max_insensitive: int | None = Field(default=None, ge=0)
    """Gate: most principles that may be flagged insensitive or be untested (the judge decided no pair under them)
    (None: no gate)."""


class JudgeConfig(JudgeSettings, RoleConfig):
    """The judge: its model (as a role) and how it compares (mode, orders, ensemble)."""

    params: SamplingParams | None = None  # type: ignore[assignment]
    """Sampling for `cot`/`verdict` (default: greedy; 512 tokens for cot, 8 for verdict)."""
    audit: AuditConfig | None = None
    """Audit the judge's biases in the run (see AuditConfig); not part of any judgment's fingerprint."""
    constitution_test: ConstitutionTestConfig | None = None
    """Test the constitution against the judge in the run (see ConstitutionTestConfig); not part of any judgment's
    fingerprint."""
    models: list[RoleConfig] | None = None
    """A panel of judges instead of one `model`: two or more roles (a model string, or model, api_key_env, limits,
    options each), every one asked every comparison; the panel's P(A) is their mean (or weighted mean, `weights`).
    A pair any member fails is a failed judgment; each member's votes stay in the judgment."""
    weights: list[float] | None = None
    """A panel's weights, one per member in order (scaled to sum to 1): `charter agreement` fits them on human labels
    and prints them. Changing them re-pools every judgment from the call cache at no cost. None: the plain mean."""

    @model_validator(mode="after")
    def _check_panel(self) -> JudgeConfig:
        if self.models is None:
            if self.weights is not None:
                raise LocatedValueError("weights are for a panel of judges: set judge.models too", ("weights",))
            return self
        if len(self.models) < 2:
            raise LocatedValueError("a panel needs two or more judge models (one judge: set judge.model)", ("models",))
        alone = RoleConfig()  # a panel's own role fields stay at their defaults (a dumped config repeats them)
        fields = ("model", "api_key_env", "limits", "options", "batch")
        own = [k for k in fields if getattr(self, k) != getattr(alone, k)]
        if own:
            raise LocatedValueError(
                f"set judge.model or judge.models, not both: give each member its own {', '.join(own)}", (own[0],)
            )
        require_unique(((m.model, ("models", i)) for i, m in enumerate(self.models)), "{} is on the panel twice")
        if self.weights is not None and (
            len(self.weights) != len(self.models) or min(self.weights) < 0 or sum(self.weights) <= 0
        ):
            raise LocatedValueError(
                f"give {len(self.models)} weights, one per member, none negative and not all 0", ("weights",)
            )
        if self.combination.recorded:
            raise LocatedValueError(
                f"a panel pools its members' mean votes: combine {self.combine} judges with one judge model",
                ("combine",),
            )
        if self.rates_alone:
            raise LocatedValueError(
                f"mode {self.mode} ranks samples with one judge model; a panel pools comparisons "
                f"({', '.join(pairwise_modes())})",
                ("mode",),
            )
        if self.constitution_test is not None:
            raise LocatedValueError(
                "the constitution test measures one judge model: test each member with "
                "`charter constitutions test CONSTITUTION --pairs RUN --judge MODEL`",
                ("constitution_test",),
            )
        if self.audit is not None:
            raise LocatedValueError(
                "the audit measures one judge model: audit each member with "
                "`charter judge audit --pairs RUN --judge MODEL`",
                ("audit",),
            )
        return self

    @property
    def members(self) -> list[RoleConfig]:
        """The judge's model roles: the panel's members, or the one judge."""
        return list(self.models) if self.models is not None else [self]

    def settings(self) -> JudgeSettings:
        """The comparison settings alone (without the model and its limits)."""
        return JudgeSettings(**{k: getattr(self, k) for k in JudgeSettings.model_fields})
