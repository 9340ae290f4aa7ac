"""cocotb testbench of the RTL decoder's legality check (hw.decoder.InstrChecker) against the
Python decoder and checker (hw.isa.decode + hw.isa.check) on seeded random words.

The words are built to hit every rule: per opcode, random field values biased towards the
bank ends (so range rules hold and fail), some with stray reserved bits, plus words with
undefined opcodes. Environment: FOLDACCEL_CONFIG (TOML of the hardware config the design was
built for), FOLDACCEL_SEED, FOLDACCEL_WORDS.
"""

from __future__ import annotations

import os
import tomllib

import cocotb
import numpy as np
from cocotb.triggers import Timer

from hw import isa
from hw.opcodes import TABLE
from hw.uarch import BANKS, AccelParams
from model.config import config_from_dict
from sim.rtl.scoreboard import Scoreboard

P = AccelParams.from_hw(config_from_dict(tomllib.loads(os.environ["FOLDACCEL_CONFIG"])).hardware)
SEED = int(os.environ.get("FOLDACCEL_SEED", "1"))
WORDS = int(os.environ.get("FOLDACCEL_WORDS", "4000"))


def python_illegal(word: int) -> bool:
    try:
        isa.check(isa.decode(word), P)
    except isa.IsaError:
        return True
    return False


def random_words(rng: np.random.Generator, n: int) -> list[int]:
    depths = [P.depth(b) for b in BANKS]
    words = []
    names = sorted(TABLE)
    for _ in range(n):
        kind = rng.random()
        if kind < 0.05:  # undefined opcode, random rest
            code = int(rng.choice([c for c in range(16) if c not in
                                   {s.code for s in TABLE.values()}]))
            words.append(code | int(rng.integers(0, 2**62)) << 4)
            continue
        op = names[int(rng.integers(len(names)))]
        args = {}
        for name, bits in TABLE[op].fields:
            r = rng.random()
            if r < 0.2:   # near a bank end
                v = int(rng.choice(depths)) - int(rng.integers(0, 5))
            elif r < 0.7:
                v = int(rng.integers(0, 4))
            else:
                v = int(rng.integers(0, 1 << bits))
            args[name] = min(max(v, 0), (1 << bits) - 1)
        if op == "CONFIG" and rng.random() < 0.7:
            args.update(rows=P.rows, cols=P.cols)
        deps = tuple(int(rng.integers(0, isa.DEP_MAX + 1)) for _ in isa.UNITS)
        word = isa.Instr(op, args, deps).encode()
        if rng.random() < 0.1:  # a stray bit anywhere outside the opcode
            word |= 1 << int(rng.integers(4, 128))
        words.append(word)
    return words


@cocotb.test()
async def random_words_agree(dut):
    """The RTL's illegal flag equals the Python checker's verdict on every word."""
    sb = Scoreboard("decoder.random_words", SEED)
    words = random_words(np.random.default_rng(SEED), WORDS)
    verdicts = []
    for word in words:
        dut.word.value = word
        await Timer(1, unit="ns")
        want = python_illegal(word)
        verdicts.append(want)
        sb.compare(f"word {word:#034x} ({'illegal' if want else 'legal'} in Python)",
                   want, bool(int(dut.illegal.value)))
    # the stimulus exercised both verdicts and every opcode's rules
    assert 0.1 < sum(verdicts) / len(verdicts) < 0.9, sum(verdicts)
    sb.check(min_compared=WORDS)
