"""The dataset card's Quick Start (spec Part 2), verbatim: our export must work with it unchanged."""
# ruff: noqa
import numpy as np

# Unpack indices (low 16 bits + packed 2-bit high bits)
def unpack_indices(low, high_bytes, counts):
    packed = np.frombuffer(high_bytes, dtype=np.uint8)
    high = np.stack([(packed >> i) & 0x03 for i in [0, 2, 4, 6]], axis=1).flatten()
    full = np.asarray(low, dtype=np.int32) | (high[:len(low)].astype(np.int32) << 16)
    result, offset = [], 0
    for c in counts:
        result.append(full[offset:offset+c])
        offset += c
    return result

# Dequantize logits
def dequantize(quantized, vmin, vmax):
    return (np.array(quantized, dtype=np.float32) / 65535) * (vmax - vmin) + vmin

# Hydrate sample: unpack all indices and slice logits
def hydrate_sample(sample):
    counts = sample["top_counts"]
    num_tokens = sample["num_tokens"]

    # Unpack nucleus (top-p) indices
    sample["top_indices"] = unpack_indices(
        sample["top_indices_low"], sample["top_indices_high"], counts
    )

    # Slice nucleus logits by counts
    flat_top = np.array(sample["top_logits_quantized"], dtype=np.uint16)
    sample["top_logits"] = []
    offset = 0
    for c in counts:
        sample["top_logits"].append(flat_top[offset:offset+c])
        offset += c

    # Unpack sampled indices (fixed stride per token)
    stride = len(sample["sampled_indices_low"]) // num_tokens
    sampled_counts = [stride] * num_tokens
    sample["sampled_indices"] = unpack_indices(
        sample["sampled_indices_low"], sample["sampled_indices_high"], sampled_counts
    )

    # Slice sampled logits
    flat_sampled = np.array(sample["sampled_logits_quantized"], dtype=np.uint16)
    sample["sampled_logits"] = [flat_sampled[i*stride:(i+1)*stride] for i in range(num_tokens)]

    return sample

# Print nucleus (top-p) logits for a token
def print_top_logits(sample, token_idx, tokenizer):
    indices = sample["top_indices"][token_idx]
    logits = dequantize(sample["top_logits"][token_idx], sample["top_min"][token_idx], sample["top_max"][token_idx])
    lse = sample["logsumexp"][token_idx]
    probs = np.exp(logits - lse) * 100  # Convert to percentage

    # Sort by descending logit
    order = np.argsort(logits)[::-1]

    print(f"=== Nucleus logits for token {token_idx} (logsumexp={lse:.4f}) ===")
    print(f"{'Rank':<6} {'Index':<8} {'Token':<20} {'Logit':<12} {'Prob %':<10}")
    print("-" * 60)
    for rank, i in enumerate(order):
        token_str = repr(tokenizer.decode([indices[i]]))[1:-1]  # Remove quotes
        if len(token_str) > 18:
            token_str = token_str[:15] + "..."
        print(f"{rank:<6} {indices[i]:<8} {token_str:<20} {logits[i]:<12.4f} {probs[i]:<10.4f}")
    print(f"\nTotal nucleus probability mass: {probs.sum():.2f}%")

# Print sampled logits for a token
def print_sampled_logits(sample, token_idx, tokenizer):
    indices = sample["sampled_indices"][token_idx]
    logits = dequantize(sample["sampled_logits"][token_idx], sample["sampled_min"][token_idx], sample["sampled_max"][token_idx])
    lse = sample["logsumexp"][token_idx]
    probs = np.exp(logits - lse) * 100  # Convert to percentage

    # Sort by descending logit
    order = np.argsort(logits)[::-1]

    print(f"=== Sampled logits for token {token_idx} (logsumexp={lse:.4f}) ===")
    print(f"{'#':<6} {'Index':<8} {'Token':<20} {'Logit':<12} {'Prob %':<10}")
    print("-" * 60)
    for rank, i in enumerate(order):
        token_str = repr(tokenizer.decode([indices[i]]))[1:-1]
        if len(token_str) > 18:
            token_str = token_str[:15] + "..."
        print(f"{rank:<6} {indices[i]:<8} {token_str:<20} {logits[i]:<12.4f} {probs[i]:<10.6f}")
    print(f"\nTotal sampled probability mass: {probs.sum():.6f}%")
