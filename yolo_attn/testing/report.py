"""The result of a contract check: one row per property, pass / fail / skip, with the reason."""

from __future__ import annotations

from dataclasses import dataclass, field

PASS, FAIL, SKIP = "pass", "FAIL", "skip"


@dataclass
class PropertyResult:
    """One property of the contract.

    Attributes:
        name (str): The property, e.g. ``"shape kept"``.
        status (str): ``"pass"``, ``"FAIL"`` or ``"skip"``.
        reason (str): Why it failed or was skipped (what was measured when it passed, if anything).
        seconds (float): Wall time of the check.
    """

    name: str
    status: str
    reason: str = ""
    seconds: float = 0.0


@dataclass
class CheckReport:
    """Every property checked for one block.

    Attributes:
        block (str): The block's YAML name (or class name).
        results (list[PropertyResult]): One per property, in check order.
    """

    block: str
    results: list[PropertyResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no property failed (skipped ones do not count)."""
        return all(r.status != FAIL for r in self.results)

    def failed(self) -> list[PropertyResult]:
        """The failed properties."""
        return [r for r in self.results if r.status == FAIL]

    def result(self, name: str) -> PropertyResult:
        """Return the row of one property by name."""
        return next(r for r in self.results if r.name == name)

    def table(self) -> str:
        """Return the plain-text table: property, status, seconds, reason."""
        width = max([len(r.name) for r in self.results] + [8])
        lines = [f"check-block {self.block}", f"{'property':<{width}}  status  time    reason"]
        for r in self.results:
            lines.append(f"{r.name:<{width}}  {r.status:<6}  {r.seconds:5.1f}s  {r.reason}")
        verdict = "all properties hold" if self.ok else f"{len(self.failed())} propert(ies) FAILED"
        lines.append(f"{self.block}: {verdict}")
        return "\n".join(lines)
