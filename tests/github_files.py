"""Reading GitHub's file commands the way the runner does, independently of gate's own writer."""
from __future__ import annotations


def parse_github_output(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT as GitHub reads it: `name=value` lines and `name<<DELIM` ... `DELIM` blocks."""
    out, lines, i = {}, text.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            j = lines.index(delimiter, i + 1)
            out[name] = "\n".join(lines[i + 1:j])
            i = j + 1
        else:
            if line:
                name, value = line.split("=", 1)
                out[name] = value
            i += 1
    return out
