"""Compiled (numba) CTC prefix beam search: the search of ``beam_search(impl="python")``, in machine code.

Same rules as the Python reference in htr.text.decoding, step for step, so that both find the same
labelling with the same confidence:

- per frame, the classes tried are the ``beam_width`` most likely ones (the blank counted), minus the
  blank and those below ``char_prune``; a frame whose top values hold a tie takes numpy's argsort
  order, as the reference does;
- candidates are merged in the reference's insertion order (each beam in rank order: blank, repeat,
  extensions), ranked by ``logaddexp(p_b, p_nb) + insertion_bonus * len + lm_weight * log P_lm``, and
  the best ``beam_width`` kept by a stable sort (ties: the earlier candidate);
- the winner maximises the rank plus ``lm_weight * log P_lm(EOS | prefix)``, the first one on a tie.

Prefixes are nodes of a prefix tree held in integer arrays (parent, last class, LM state, length, first
child, next sibling), so a beam entry is one integer. A node is made only for a prefix that enters the
beam, and keeps its LM state and score; an extension without a node has its LM term computed only when
it could enter the beam (an exact bound, see ``search_frames``). The LM is read
from ``CharNgramLM.tables()``: a prefix's LM state is its longest known context, and P(c | state) is
the same interpolated Kneser-Ney sum, in the same floating-point order.

numba has no clock, so a deadline is checked from Python between chunks of ``DEADLINE_FRAMES`` frames
(at frame 0 first); the search itself runs without the GIL.
"""
from __future__ import annotations

import math
import time

import numpy as np
from numba import njit

from htr.errors import ShapeError, TimeLimitError
from htr.text import INSERTION_BONUS, LM_WEIGHT
from htr.text.lm import LMTables

DEADLINE_FRAMES = 64  # frames between two looks at the deadline
LOG2 = math.log(2.0)
NEG_INF = -math.inf

# columns of the node table
PARENT, LAST, STATE, LENGTH, CHILD, SIBLING, STAMP, SLOT = range(8)
NODE_COLUMNS = 8
# An extension is left unscored when even its rank without its own LM term is this far below the beam's
# last: far above the rounding of a sum of log-probabilities, far below any difference that matters.
PRUNE_MARGIN = 1e-6


@njit(cache=True, inline="always")
def _logaddexp(a, b):
    """numpy's npy_logaddexp, operation for operation (with -inf on one side: the other, as it gives)."""
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    if a == b:  # equal infinities too
        return a + LOG2
    d = a - b
    if d > 0:
        return a + math.log1p(math.exp(-d))
    if d <= 0:
        return b + math.log1p(math.exp(d))
    return d  # NaN


@njit(cache=True, nogil=True)
def top_classes(lp, k, blank, char_prune):
    """Per frame, the classes the search tries, best first (-1 pads), and whether the frame's k + 1 best
    values (of those >= char_prune) hold a tie (then their order is numpy's argsort's, which the caller
    supplies). The k best of all, less those below char_prune, are the k best of those above it."""
    T, C = lp.shape
    k1 = min(k + 1, C)
    out = np.full((T, k), -1, dtype=np.int32)
    ties = np.zeros(T, dtype=np.bool_)
    vals = np.empty(k1)
    idx = np.empty(k1, dtype=np.int64)
    for t in range(T):
        m = 0
        for c in range(C):
            v = lp[t, c]
            if not v >= char_prune:  # never tried, and what is below cannot push a tried class out
                continue
            if m < k1:
                j = m
                m += 1
            elif v > vals[m - 1]:
                j = m - 1
            else:
                continue
            while j > 0 and vals[j - 1] < v:
                vals[j] = vals[j - 1]
                idx[j] = idx[j - 1]
                j -= 1
            vals[j] = v
            idx[j] = c
        for i in range(m - 1):
            if vals[i] == vals[i + 1]:
                ties[t] = True
        j = 0
        for i in range(min(k, m)):
            c = idx[i]
            if c != blank:
                out[t, j] = c
                j += 1
    return out, ties


@njit(cache=True, inline="always")
def _find(ptr, entry_char, s, c):
    """Index of state s's entry for character c, or -1 (binary search over its sorted ids)."""
    lo = ptr[s]
    hi = ptr[s + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        x = entry_char[mid]
        if x < c:
            lo = mid + 1
        elif x > c:
            hi = mid
        else:
            return mid
    return -1


@njit(cache=True)
def lm_logprob(s, c, backoff, total, types, ptr, entry_char, entry_count, uniform, discount, chain):
    """log P(c | state s): CharNgramLM._prob, from the uniform floor up through the known suffixes."""
    depth = 0
    h = s
    while h >= 0:
        chain[depth] = h
        depth += 1
        h = backoff[h]
    p = uniform
    for j in range(depth - 1, -1, -1):
        h = chain[j]
        n = total[h]
        if n == 0.0:  # an empty context without counts passes the lower order through
            continue
        count = 0.0
        if c >= 0:
            e = _find(ptr, entry_char, h, c)
            if e >= 0:
                count = entry_count[e]
        x = count - discount
        if x < 0.0:
            x = 0.0
        p = x / n + discount * types[h] / n * p
    return math.log(p)


@njit(cache=True)
def _next_state(s, c, backoff, ptr, entry_char, entry_next):
    """The state after character c from state s: the first known suffix of s that c extends."""
    if c < 0:
        return 0
    h = s
    while h >= 0:
        e = _find(ptr, entry_char, h, c)
        if e >= 0:
            return entry_next[e]
        h = backoff[h]
    return 0


@njit(cache=True, inline="always")
def _add(node, b, nb, t, nodes, cand_node, cand_b, cand_nb, n):
    """Merge (b, nb) into the candidate for ``node`` (made at its first add); returns the candidate count."""
    if nodes[node, STAMP] == t:
        i = nodes[node, SLOT]
        cand_b[i] = _logaddexp(cand_b[i], b)
        cand_nb[i] = _logaddexp(cand_nb[i], nb)
        return n
    nodes[node, STAMP] = t
    nodes[node, SLOT] = n
    cand_node[n] = node
    cand_b[n] = b
    cand_nb[n] = nb
    return n + 1


@njit(cache=True, inline="always")
def _before(s, i, top_score, top, j):
    """Whether candidate i (score s) ranks before the one at position j of the top list: a higher score,
    or the same score and an earlier candidate (Python's stable sort)."""
    return s > top_score[j] or (s == top_score[j] and i < top[j])


@njit(cache=True, inline="always")
def _insert(i, s, top_score, top, m, B):
    """Put candidate i into the top list (sorted, at most B long) if it belongs there; returns its length."""
    if m < B:
        j = m
        m += 1
    elif _before(s, i, top_score, top, m - 1):
        j = m - 1
    else:
        return m
    while j > 0 and _before(s, i, top_score, top, j - 1):
        top_score[j] = top_score[j - 1]
        top[j] = top[j - 1]
        j -= 1
    top_score[j] = s
    top[j] = i
    return m


@njit(cache=True, nogil=True)
def search_frames(lp, classes, t0, t1, blank, lm_weight, insertion_bonus, use_lm, char_ids,
                  backoff, total, types, ptr, entry_char, entry_count, entry_next, uniform, discount, depth,
                  nodes, node_lm, beam, beam_b, beam_nb, counters):
    """Frames t0 .. t1 - 1 of the search; ``counters`` = [nodes used, beams]. Returns the next frame to do:
    t1, or earlier when the node table is too full for one more frame (grow it and call again).
    ``depth``: room for the longest chain of back-off states (the LM's order + 1).

    An extension whose prefix has no node yet gets one only if it is kept, and its LM score is only
    computed if it could be kept: its rank without the new character's LM term bounds its rank from
    above (log P <= 0, lm_weight >= 0), so a bound below the B-th best rank so far (less a margin for
    rounding) cannot make the beam. That changes no result, only the work.
    """
    B = beam.shape[0]
    K = classes.shape[1]
    size = B * (K + 2)
    cand_node = np.empty(size, dtype=np.int32)  # -1: an extension without a node (parent, char below)
    cand_parent = np.empty(size, dtype=np.int32)
    cand_char = np.empty(size, dtype=np.int32)
    cand_b = np.empty(size)
    cand_nb = np.empty(size)
    cand_lm = np.empty(size)
    top = np.empty(B, dtype=np.int64)
    top_score = np.empty(B)
    new_beam = np.empty(B, dtype=np.int32)
    new_b = np.empty(B)
    new_nb = np.empty(B)
    chain = np.empty(depth, dtype=np.int64)
    prune = use_lm and lm_weight >= 0.0
    for t in range(t0, t1):
        n_nodes = counters[0]
        n_beams = counters[1]
        if n_nodes + B > nodes.shape[0]:
            return t
        n = 0
        for i in range(n_beams):
            p = beam[i]
            pb = beam_b[i]
            pnb = beam_nb[i]
            tot = _logaddexp(pb, pnb)
            n = _add(p, tot + lp[t, blank], NEG_INF, t, nodes, cand_node, cand_b, cand_nb, n)
            last = nodes[p, LAST]
            if last >= 0:
                n = _add(p, NEG_INF, pnb + lp[t, last], t, nodes, cand_node, cand_b, cand_nb, n)
            for j in range(K):
                c = classes[t, j]
                if c < 0:
                    break
                nb = pb + lp[t, c] if c == last else tot + lp[t, c]  # "a-a" -> "aa" needs the blank between
                child = nodes[p, CHILD]
                while child >= 0 and nodes[child, LAST] != c:
                    child = nodes[child, SIBLING]
                if child >= 0:
                    n = _add(child, NEG_INF, nb, t, nodes, cand_node, cand_b, cand_nb, n)
                else:  # a prefix never seen: only p's loop reaches it, so it merges with nothing
                    cand_node[n] = -1
                    cand_parent[n] = p
                    cand_char[n] = c
                    cand_b[n] = NEG_INF
                    cand_nb[n] = nb
                    n += 1
        # the best B candidates, in the order of Python's stable sort; prefixes with nodes first, so
        # that the bound of the others meets a full list early
        m = 0
        for i in range(n):
            node = cand_node[i]
            if node >= 0:
                s = _logaddexp(cand_b[i], cand_nb[i]) + insertion_bonus * nodes[node, LENGTH]
                if use_lm:
                    s = s + lm_weight * node_lm[node]
                m = _insert(i, s, top_score, top, m, B)
        for i in range(n):
            if cand_node[i] < 0:
                p = cand_parent[i]
                s = _logaddexp(cand_b[i], cand_nb[i]) + insertion_bonus * (nodes[p, LENGTH] + 1)
                if use_lm:
                    if prune and m == B and s + lm_weight * node_lm[p] < top_score[B - 1] - PRUNE_MARGIN:
                        continue
                    lm = node_lm[p] + lm_logprob(nodes[p, STATE], char_ids[cand_char[i]], backoff, total, types,
                                                 ptr, entry_char, entry_count, uniform, discount, chain)
                    cand_lm[i] = lm
                    s = s + lm_weight * lm
                m = _insert(i, s, top_score, top, m, B)
        for j in range(m):
            i = top[j]
            node = cand_node[i]
            if node < 0:  # kept: now it gets its node
                p = cand_parent[i]
                c = cand_char[i]
                node = n_nodes
                n_nodes += 1
                nodes[node, PARENT] = p
                nodes[node, LAST] = c
                nodes[node, LENGTH] = nodes[p, LENGTH] + 1
                nodes[node, CHILD] = -1
                nodes[node, SIBLING] = nodes[p, CHILD]
                nodes[node, STAMP] = -1
                nodes[p, CHILD] = node
                if use_lm:
                    node_lm[node] = cand_lm[i]
                    nodes[node, STATE] = _next_state(nodes[p, STATE], char_ids[c], backoff, ptr, entry_char,
                                                     entry_next)
                else:
                    node_lm[node] = 0.0
                    nodes[node, STATE] = 0
            new_beam[j] = node
            new_b[j] = cand_b[i]
            new_nb[j] = cand_nb[i]
        for j in range(m):
            beam[j] = new_beam[j]
            beam_b[j] = new_b[j]
            beam_nb[j] = new_nb[j]
        counters[0] = n_nodes
        counters[1] = m
    return t1


@njit(cache=True)
def best_beam(n_beams, lm_weight, insertion_bonus, use_lm, eos, backoff, total, types, ptr, entry_char,
              entry_count, uniform, discount, depth, nodes, node_lm, beam, beam_b, beam_nb):
    """Index of the winning beam: the highest rank plus the LM's end of line, the first one on a tie."""
    chain = np.empty(depth, dtype=np.int64)
    best = -1
    best_score = NEG_INF
    for i in range(n_beams):
        node = beam[i]
        s = _logaddexp(beam_b[i], beam_nb[i]) + insertion_bonus * nodes[node, LENGTH]
        if use_lm:
            s = s + lm_weight * node_lm[node]
            s += lm_weight * lm_logprob(nodes[node, STATE], eos, backoff, total, types, ptr, entry_char,
                                        entry_count, uniform, discount, chain)
        if best < 0 or s > best_score:
            best = i
            best_score = s
    return best


_NO_LM = (np.full(1, -1, dtype=np.int32), np.zeros(1), np.zeros(1), np.zeros(2, dtype=np.int64),
          np.zeros(0, dtype=np.int32), np.zeros(0), np.zeros(0, dtype=np.int32))


def classes_to_try(lp: np.ndarray, beam_width: int, blank: int, char_prune: float) -> np.ndarray:
    """(T, beam_width) int32: per frame the classes the search extends with, as the reference picks them."""
    classes, ties = top_classes(lp, beam_width, blank, char_prune)
    for t in np.flatnonzero(ties):  # a tie: numpy's argsort order decides, as in the reference
        frame = lp[t]
        picked = [c for c in np.argsort(frame)[::-1][:beam_width] if c != blank and frame[c] >= char_prune]
        classes[t] = -1
        classes[t, :len(picked)] = picked
    return classes


def beam_search_compiled(lp: np.ndarray, beam_width: int, tables: LMTables | None = None,
                         char_ids: np.ndarray | None = None, lm_weight: float = LM_WEIGHT,
                         insertion_bonus: float = INSERTION_BONUS,
                         char_prune: float = -10.0, blank: int = 0, deadline: float | None = None
                         ) -> tuple[list[int], float]:
    """(T, C) float64 log-probabilities of one line -> the best ``(indices, confidence)``.

    ``tables`` (``CharNgramLM.tables()``) and ``char_ids`` (its ``char_ids(codec.charset)``) switch the LM
    on; arguments are checked by ``htr.text.decoding.beam_search``, which calls this by default.
    """
    lp = np.ascontiguousarray(lp, dtype=np.float64)
    # one type per argument, so that numba compiles (or reads from its cache) one version of each kernel
    beam_width, blank = int(beam_width), int(blank)
    lm_weight, insertion_bonus, char_prune = float(lm_weight), float(insertion_bonus), float(char_prune)
    T, C = lp.shape
    if T == 0:
        return [], 1.0
    use_lm = tables is not None
    if use_lm:
        if char_ids is None or len(char_ids) < C:
            raise ShapeError(f"log_probs has {C} classes but the codec maps "
                             f"{0 if char_ids is None else len(char_ids)}; expected the codec of the network")
        lm_arrays = (tables.backoff, tables.total, tables.types, tables.ptr, tables.entry_char,
                     tables.entry_count, tables.entry_next)
        uniform, discount, depth = float(tables.uniform), float(tables.discount), int(tables.order) + 1
        start, eos = int(tables.start), int(tables.eos)
    else:
        char_ids = np.full(C, -1, dtype=np.int32)
        lm_arrays = _NO_LM
        uniform, discount, start, eos, depth = 1.0, 0.5, 0, 0, 1
    classes = classes_to_try(lp, beam_width, blank, char_prune)
    cap = 1 + min(T, 64) * beam_width  # at most beam_width new nodes per frame; grown when a line needs more
    nodes = np.empty((cap, NODE_COLUMNS), dtype=np.int32)
    nodes[0] = (-1, -1, start, 0, -1, -1, -1, 0)
    node_lm = np.zeros(cap)
    beam = np.zeros(beam_width, dtype=np.int32)
    beam_b = np.full(beam_width, NEG_INF)
    beam_nb = np.full(beam_width, NEG_INF)
    beam_b[0] = 0.0
    counters = np.array([1, 1], dtype=np.int64)
    t = 0
    while t < T:
        if deadline is not None and time.perf_counter() > deadline:
            raise TimeLimitError(f"beam search (width {beam_width}) stopped at frame {t} of {T}: past its time limit")
        stop = T if deadline is None else min(T, t + DEADLINE_FRAMES)
        t = search_frames(lp, classes, t, stop, blank, lm_weight, insertion_bonus, use_lm, char_ids, *lm_arrays,
                          uniform, discount, depth, nodes, node_lm, beam, beam_b, beam_nb, counters)
        if t < stop:  # the node table is full: double it
            grown = np.empty((2 * nodes.shape[0], NODE_COLUMNS), dtype=np.int32)
            grown[:nodes.shape[0]] = nodes
            nodes = grown
            node_lm = np.concatenate([node_lm, np.zeros(len(node_lm))])
    n_beams = int(counters[1])
    i = best_beam(n_beams, lm_weight, insertion_bonus, use_lm, eos, *lm_arrays[:6], uniform, discount,
                  depth, nodes, node_lm, beam, beam_b, beam_nb)
    node = int(beam[i])
    out = []
    while node > 0:
        out.append(int(nodes[node, LAST]))
        node = int(nodes[node, PARENT])
    return out[::-1], float(math.exp(np.logaddexp(beam_b[i], beam_nb[i]) / T))
