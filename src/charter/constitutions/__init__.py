"""Constitutions: schema, loader, hashing, the bundled library and importers."""

from charter.constitutions.importers import dump_constitution_yaml, import_hf_cai
from charter.constitutions.markdown import SpecImport, SpecPair, import_constitution, read_markdown_spec
from charter.constitutions.schema import (
    Constitution,
    FewShotExample,
    Message,
    Principle,
    SpecExample,
    builtin_names,
    load_constitution,
)

__all__ = [
    "Constitution",
    "FewShotExample",
    "Message",
    "Principle",
    "SpecExample",
    "SpecImport",
    "SpecPair",
    "builtin_names",
    "dump_constitution_yaml",
    "import_constitution",
    "import_hf_cai",
    "load_constitution",
    "read_markdown_spec",
]
