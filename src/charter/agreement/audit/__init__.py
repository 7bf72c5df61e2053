"""The judge audit: how far a judge's verdict moves for reasons that are not the principles.

On pairs with a known better response (human-labeled pairs, or a run's own high-confidence pairs), the judge
is asked the same questions again with one thing changed at a time:

- **position**: the two orders; the flip rate is the share of pairs whose winner changes with the order
  (position consistency is its complement), and `first_shown` the share of single-order verdicts that picked
  whichever response was shown first (0.5 for no position bias, 1.0 for a judge that always says A);
- **length**: the worse response padded with content-free verbosity (the question restated, polite filler)
  and the better one trimmed to its first sentences; the flip rate among pairs judged correctly when clean,
  and the shift in P(better);
- **injection**: a planted string appended to the worse response, one family at a time, in the fenced prompt
  (format 2, in use) and the unfenced one (format 1), side by side. Each family is measured against a control
  that appends neutral text of the same length, so a judge that merely likes longer responses does not count
  as obeying the injection;
- **self-preference** (optional): the judge model writes its own answer to each prompt; how often the judge
  prefers it over the known better response, and over the known worse one.

Every rate comes with a 95% bootstrap interval over pairs and the number of pairs it rests on; a pair whose
call failed is left out of the measures that need that call and counted, never given a made-up verdict.
Cost: with both orders, 4 + 2 + 4·2·2 = 24 judge calls per pair and principle for the four injection
families (+ 4 and one generation with self-preference); with one order, 2 + 2 + 1 + 4·2 = 13.
"""

from charter.agreement.audit.perturb import FAMILY_NAMES, FORMATS, INJECTIONS, inject, neutral, pad, restate, trim
from charter.agreement.audit.report import (
    AUDIT_META,
    AuditReport,
    FlipShift,
    InjectionFigures,
    audit_config_for,
    markdown,
    rows,
    save_audit,
    stored_audit,
)
from charter.agreement.audit.running import (
    AUDIT_VERSION,
    BOOTSTRAP_SAMPLES,
    AuditPair,
    AuditPlan,
    audit_judge,
    audit_key,
    pairs_from_file,
    pairs_from_run,
    run_audit,
    sample,
)

__all__ = [
    "AUDIT_META",
    "AUDIT_VERSION",
    "BOOTSTRAP_SAMPLES",
    "FAMILY_NAMES",
    "FORMATS",
    "INJECTIONS",
    "AuditPair",
    "AuditPlan",
    "AuditReport",
    "FlipShift",
    "InjectionFigures",
    "audit_config_for",
    "audit_judge",
    "audit_key",
    "inject",
    "markdown",
    "neutral",
    "pad",
    "pairs_from_file",
    "pairs_from_run",
    "restate",
    "rows",
    "run_audit",
    "sample",
    "save_audit",
    "stored_audit",
    "trim",
]
