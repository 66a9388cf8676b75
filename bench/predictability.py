"""How often can site staff guess the next arm? (issue 13 E.19)

    python -m bench.predictability [--seeds 2000] [--length 30]

A site user sees the arms of their own site's participants in the order they were randomised (the
trial is open-label), and knows the published rule's block sizes, but not the concealed seed nor
(now) the slot numbers. Two guessers are measured on sequences drawn from many seeds:

* ``balance``: guess the arm that is behind since the start (the classic convergence strategy of
  Blackwell and Hodges; every block ends balanced, so the overall deficit is the block's);
* ``bayes``: the best possible guess from the arms seen, knowing the block sizes: the posterior
  probability of each arm given every way the history can be cut into blocks.

A tie is a coin toss (counted as half right).
"""

from __future__ import annotations

import argparse
from math import comb

from domain.randomisation import RULE_V1, RULE_V2, RULES, sequence

A = "treg_plus_standard"


def balance_guess(history: list[str]) -> float:
    """P(guess is A) for the convergence strategy."""
    a = sum(1 for x in history if x == A)
    b = len(history) - a
    return 1.0 if a < b else 0.0 if a > b else 0.5


def bayes_probability(history: list[str], sizes: tuple[int, ...]) -> float:
    """P(next arm is A | the arms so far), blocks of ``sizes`` drawn uniformly, arms uniformly permuted."""
    n = len(history)
    prefix_a = [0]
    for x in history:
        prefix_a.append(prefix_a[-1] + (x == A))
    p_size = 1 / len(sizes)
    # boundary[t]: probability that a block ends exactly after t arms and the arms match the history
    boundary = [0.0] * (n + 1)
    boundary[0] = 1.0
    for t in range(1, n + 1):
        for k in sizes:
            s = t - k
            if s >= 0 and boundary[s] and 2 * (prefix_a[t] - prefix_a[s]) == k:
                boundary[t] += boundary[s] * p_size / comb(k, k // 2)
    weight_a = weight = 0.0
    for s in range(n + 1):  # the current block began after s arms
        if not boundary[s]:
            continue
        m, a = n - s, prefix_a[n] - prefix_a[s]
        for k in sizes:
            if m >= k or a > k // 2 or m - a > k // 2:
                continue
            # probability of the arms seen in this block so far, and of A next
            w = boundary[s] * p_size * comb(k - m, k // 2 - a) / comb(k, k // 2)
            weight += w
            weight_a += w * (k // 2 - a) / (k - m)
    return weight_a / weight if weight else 0.5


def predictability(rule: str, seeds: int = 2000, length: int = 30, strategy: str = "bayes") -> float:
    """The share of allocations a site user guesses right (ties half), over ``seeds`` sequences."""
    sizes = RULES[rule][0]
    right = total = 0.0
    for i in range(seeds):
        arms = sequence(i.to_bytes(8, "big") * 4, "MINSK", length, rule)
        for n in range(length):
            p = bayes_probability(arms[:n], sizes) if strategy == "bayes" else balance_guess(arms[:n])
            guess_a = 1.0 if p > 0.5 else 0.0 if p < 0.5 else 0.5
            right += guess_a if arms[n] == A else 1 - guess_a
            total += 1
    return right / total


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.predictability")
    parser.add_argument("--seeds", type=int, default=2000)
    parser.add_argument("--length", type=int, default=30, help="allocations per site (the trial has 30)")
    args = parser.parse_args()
    for rule in (RULE_V1, RULE_V2):
        figures = {s: predictability(rule, args.seeds, args.length, s) for s in ("balance", "bayes")}
        print(f"{rule}: guessed right {figures['balance']:.1%} (balance), {figures['bayes']:.1%} (best possible), "
              f"over {args.seeds} seeds x {args.length} allocations")


if __name__ == "__main__":
    main()
