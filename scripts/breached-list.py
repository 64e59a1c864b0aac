#!/usr/bin/env python3
"""Rebuilds crates/wb-crypto/data/breached-passwords.txt from a ranked list
(one password a line, most common first), e.g. the passablewords crate's
src/common-passwords.txt in ~/.cargo/registry/src:

    python3 scripts/breached-list.py SOURCE crates/wb-crypto/data/breached-passwords.txt

Kept: the 150,000 most common passwords, and every password of the source
long enough to pass the length rule (12 characters), which is the part of
the list a passphrase could otherwise slip through."""
import sys

TOP = 150_000
LONG_ENOUGH = 12


def main(source: str, target: str) -> None:
    seen, kept = set(), []
    with open(source, encoding="utf-8") as f:
        for rank, line in enumerate(f):
            word = line.strip().lower()
            if not word or word in seen:
                continue
            seen.add(word)
            if len(seen) <= TOP or len(word) >= LONG_ENOUGH:
                kept.append(word)
    with open(target, "w", encoding="utf-8") as f:
        f.write("\n".join(sorted(kept, key=lambda w: w.encode())) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
