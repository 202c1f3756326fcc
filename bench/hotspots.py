"""Hot spots from a py-spy ``--format raw`` profile (collapsed stacks: ``f1;f2;...;leaf COUNT``).

py-spy samples only threads that are running (not idle ones) by default, so sample
shares approximate shares of the process's CPU time.

    python bench/hotspots.py bench/results/gateway_profile.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class Frame:
    func: str
    file: str
    line: str

    @property
    def label(self) -> str:
        return f"{self.func} ({self.file}:{self.line})" if self.line else f"{self.func} ({self.file})"

    @property
    def area(self) -> str:
        """patchbay modules by name (``patchbay.web.mcp_endpoint``); anything else by top-level package."""
        path = self.file.removesuffix(".py")
        parts = [p for p in path.split("/") if p]
        if not parts:
            return self.file or "?"
        if parts[0] == "patchbay":
            return ".".join(parts)
        if parts[0].startswith("<"):
            return "<frozen/builtin>"
        return parts[0]


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text)
    if match is None:
        return Frame(text, "", "")
    return Frame(match["func"], match["file"], match["line"] or "")


def load(path: Path) -> list[tuple[tuple[Frame, ...], int]]:
    """The stacks of a raw py-spy profile, root first, with their sample counts."""
    stacks: list[tuple[tuple[Frame, ...], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((tuple(parse_frame(f) for f in stack.split(";")), int(count)))
    return stacks


@dataclass(frozen=True)
class Summary:
    total: int
    by_root: list[tuple[str, int]]
    self_top: list[tuple[str, int]]
    inclusive_top: list[tuple[str, int]]
    self_by_area: list[tuple[str, int]]
    patchbay_inclusive: list[tuple[str, int]]


def trunks(stacks: list[tuple[tuple[Frame, ...], int]]) -> dict[Frame, int]:
    """Per root frame (a thread, or a greenlet), how many leading frames every stack under it shares.

    Those frames (``main → uvicorn.run → asyncio.run → Runner.run``) hold 100% of their
    thread's samples and say nothing, so inclusive tables leave them out.
    """
    common: dict[Frame, tuple[Frame, ...]] = {}
    for frames, _ in stacks:
        if not frames:
            continue
        prefix = common.get(frames[0])
        if prefix is None:
            common[frames[0]] = frames
            continue
        n = 0
        while n < len(prefix) and n < len(frames) and prefix[n] == frames[n]:
            n += 1
        common[frames[0]] = prefix[:n]
    return {root: len(prefix) for root, prefix in common.items()}


def summarize(stacks: list[tuple[tuple[Frame, ...], int]], *, top: int = 25) -> Summary:
    """Self time by function and area; inclusive time below each root's trunk by function and module."""
    total = sum(n for _, n in stacks)
    trunk = trunks(stacks)
    roots: Counter[str] = Counter()
    self_fn: Counter[str] = Counter()
    self_area: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    incl_mod: Counter[str] = Counter()
    for frames, n in stacks:
        if not frames:
            continue
        skip = trunk.get(frames[0], 0)
        roots[frames[skip - 1].label if skip else frames[0].label] += n
        leaf = frames[-1]
        self_fn[leaf.label] += n
        self_area[leaf.area] += n
        branch = frames[skip:]
        # A recursive function counts once per sample.
        for label in {f.label for f in branch}:
            incl_fn[label] += n
        for area in {f.area for f in branch if f.area.startswith("patchbay.")}:
            incl_mod[area] += n
    return Summary(
        total=total,
        by_root=roots.most_common(),
        self_top=self_fn.most_common(top),
        inclusive_top=incl_fn.most_common(top),
        self_by_area=self_area.most_common(top),
        patchbay_inclusive=incl_mod.most_common(top),
    )


def format_summary(summary: Summary) -> str:
    """A plain-text report of a summary."""
    if summary.total == 0:
        return "no samples (was the process busy while py-spy was attached?)"
    out: list[str] = [f"{summary.total} samples"]

    def table(title: str, rows: list[tuple[str, int]]) -> None:
        out.append("")
        out.append(title)
        for label, n in rows:
            out.append(f"  {100.0 * n / summary.total:5.1f}%  {n:6d}  {label}")

    table(
        "Samples by stack root (a thread or a greenlet; shown by the last frame all its stacks share):",
        summary.by_root,
    )
    table("Self time by area (leaf frame's module; stdlib/deps by top-level package):", summary.self_by_area)
    table(
        "Inclusive time by patchbay module (samples with that module on the stack, below the trunk):",
        summary.patchbay_inclusive,
    )
    table("Self time by function (top):", summary.self_top)
    table("Inclusive time by function (top, below the trunk):", summary.inclusive_top)
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(format_summary(summarize(load(args.profile), top=args.top)))


if __name__ == "__main__":
    main()
