"""MkDocs hook: keep click help text literal in the generated CLI reference.

Help text such as ``NAME[:KEY=VALUE][+NAME[:...]]`` would otherwise be read as Markdown reference links.
"""

import re

from markdown import Extension
from markdown.preprocessors import Preprocessor

_SPEC = re.compile(r"(?<![`\\])\[(?=[^\]\n]*\])")


class _EscapeBrackets(Preprocessor):
    def run(self, lines):
        out, fence = [], False
        for line in lines:
            if line.lstrip().startswith("```"):
                fence = not fence
            elif not fence and "[" in line and "](" not in line and "`" not in line:
                line = _SPEC.sub(r"\\[", line)
            out.append(line)
        return out


class _Ext(Extension):
    def extendMarkdown(self, md):  # noqa: N802 (Markdown's API name)
        md.preprocessors.register(_EscapeBrackets(md), "faststeal_escape_brackets", 0)


def on_config(config):
    config.markdown_extensions.append(_Ext())
    return config
