"""Compiled (numba) inner loops of the target decoders: one pass over the stored entries, written straight into
their padded places. Kept apart so the decoders above them read as plain Arrow/numpy code."""

from __future__ import annotations

import math

import numba
import numpy as np

LEVELS = 65535.0  # the card's uint16 quantization grid


@numba.njit(cache=True, nogil=True)
def decode_card(tokens, counts, top_low, top_high, top_high_start, top_q, top_min, top_max,
                strides, tail_low, tail_high, tail_high_start, tail_q, tail_min, tail_max,
                logsumexp, has_z, log_z, temperature,
                nucleus_ids, nucleus_logprobs, nucleus_mask, tail_ids, tail_logprobs, tail_weights):
    """Card-layout rows → padded targets (outputs [tokens, widest nucleus / tail], padding written here).

    Per token t of row r: ids = low | 2-bit high part << 16 (four per byte, per row), log p = dequantized
    logit − logsumexp; tail weight w = p / (S q) with log q = log p / T − log Z (T = the row's tail
    temperature; rows without a stored log Z: T = 1 and Z = 1 − nucleus mass, the reader's fallback). Draws
    whose weight is not a positive finite number keep weight 0 and log-prob 0, so no −inf reaches a loss."""
    t = 0
    entry = 0
    draw = 0
    z_entry = 0
    for r in range(tokens.shape[0]):
        place = 0
        tail_place = 0
        stride = strides[r]
        for _ in range(tokens[r]):
            lse = np.float64(logsumexp[t])
            low = np.float64(top_min[t])
            scale = (np.float64(top_max[t]) - low) / LEVELS
            stored_z = has_z[r]
            mass = 0.0
            for j in range(counts[t]):
                byte = top_high[top_high_start[r] + (place >> 2)]
                nucleus_ids[t, j] = np.int64(top_low[entry]) | (np.int64((byte >> (2 * (place & 3))) & 3) << 16)
                logprob = np.float64(top_q[entry]) * scale + low - lse
                nucleus_logprobs[t, j] = logprob
                nucleus_mask[t, j] = True
                if not stored_z:  # the fallback's Z = 1 − nucleus mass
                    mass += math.exp(logprob)
                entry += 1
                place += 1
            for j in range(counts[t], nucleus_ids.shape[1]):
                nucleus_ids[t, j] = 0
                nucleus_logprobs[t, j] = 0.0
                nucleus_mask[t, j] = False
            if stored_z:
                z = np.float64(log_z[z_entry])
                z_entry += 1
                flatten = 1.0 - 1.0 / temperature[r]
            else:
                z = math.log(1.0 - mass) if mass < 1.0 else -math.inf
                flatten = 0.0
            low = np.float64(tail_min[t])
            scale = (np.float64(tail_max[t]) - low) / LEVELS
            constant = math.exp(z) / stride if stride else 0.0
            for k in range(stride):
                byte = tail_high[tail_high_start[r] + (tail_place >> 2)]
                tail_ids[t, k] = np.int64(tail_low[draw]) | (np.int64((byte >> (2 * (tail_place & 3))) & 3) << 16)
                logprob = np.float64(tail_q[draw]) * scale + low - lse
                # log w = log p − log q − log S = log p·(1 − 1/T) + log Z − log S: at T = 1 one value per token
                weight = math.exp(logprob * flatten + z) / stride if flatten != 0.0 else constant
                if weight > 0.0 and weight < math.inf:
                    tail_logprobs[t, k] = logprob
                    tail_weights[t, k] = weight
                else:
                    tail_logprobs[t, k] = 0.0
                    tail_weights[t, k] = 0.0
                draw += 1
                tail_place += 1
            for k in range(stride, tail_ids.shape[1]):
                tail_ids[t, k] = 0
                tail_logprobs[t, k] = 0.0
                tail_weights[t, k] = 0.0
            t += 1


@numba.njit(cache=True, nogil=True)
def read_varint(data, position, end):
    """(value, next position) of the unsigned LEB128 varint at `position`; (-1, end) if it runs past `end`."""
    value = 0
    shift = 0
    while position < end:
        byte = data[position]
        position += 1
        value |= np.int64(byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
    return -1, end


@numba.njit(cache=True, nogil=True)
def decode_compact(tokens, samples, nucleus_step, tail_step, counts, counts_start, probs, probs_start,
                   ids, ids_start, codes, codes_start,
                   nucleus_ids, nucleus_logprobs, nucleus_mask, tail_ids, tail_logprobs, tail_weights, distinct, keys):
    """Compact rows (distill/compact.py's layout) → padded targets; returns the first row whose bytes do not hold
    what its counts say, or -1. `keys` is scratch space as long as the widest nucleus. The nucleus comes out by
    descending probability (ascending code, ties by id), the tail as its distinct ids with weight draws · W / S
    and log p = log p̂_top − code · tail_step."""
    t = 0
    for r in range(tokens.shape[0]):
        n = tokens[r]
        if counts_start[r + 1] - counts_start[r] != n or probs_start[r + 1] - probs_start[r] != 4 * n:
            return r
        position, id_end = ids_start[r], ids_start[r + 1]
        code, code_end = codes_start[r], codes_start[r + 1]
        s = samples[r]
        for i in range(n):
            at = probs_start[r] + 4 * i
            log_top = math.log(np.float64(probs[at] | (np.int64(probs[at + 1]) << 8)) / LEVELS)
            mass = np.float64(probs[at + 2] | (np.int64(probs[at + 3]) << 8)) / LEVELS
            k = np.int64(counts[counts_start[r] + i])
            if code + k > code_end:
                return r
            previous = -1
            for j in range(k):  # ascending ids, insertion-sorted by (code, id) as they come
                gap, position = read_varint(ids, position, id_end)
                if gap < 0:
                    return r
                previous += gap
                key = (np.int64(codes[code]) << 32) | previous
                code += 1
                place = j
                while place > 0 and keys[place - 1] > key:
                    keys[place] = keys[place - 1]
                    place -= 1
                keys[place] = key
            for j in range(k):
                nucleus_ids[t, j] = keys[j] & 0xFFFFFFFF
                nucleus_logprobs[t, j] = log_top - np.float64(keys[j] >> 32) * nucleus_step[r]
                nucleus_mask[t, j] = True
            for j in range(k, nucleus_ids.shape[1]):
                nucleus_ids[t, j] = 0
                nucleus_logprobs[t, j] = 0.0
                nucleus_mask[t, j] = False
            previous = -1
            d = -1
            for _ in range(s):
                gap, position = read_varint(ids, position, id_end)
                if gap < 0:
                    return r
                previous += gap
                if gap != 0 or d < 0:
                    if code >= code_end:
                        return r
                    d += 1
                    tail_ids[t, d] = previous
                    tail_logprobs[t, d] = log_top - np.float64(codes[code]) * tail_step[r]
                    tail_weights[t, d] = 0.0
                    code += 1
                tail_weights[t, d] += 1.0  # draws of this id, weighted below
            distinct[t] = d + 1
            for j in range(d + 1):
                tail_weights[t, j] = tail_weights[t, j] * mass / s
                if not tail_weights[t, j] > 0.0:
                    tail_logprobs[t, j] = 0.0
            for j in range(d + 1, tail_ids.shape[1]):
                tail_ids[t, j] = 0
                tail_logprobs[t, j] = 0.0
                tail_weights[t, j] = 0.0
            t += 1
        if position != id_end or code != code_end:
            return r
    return -1
