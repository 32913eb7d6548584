#!/usr/bin/env python3
"""Generate a tiny random-weight llama-architecture GGUF model for tests.

Usage: make_model.py OUT.gguf

The model is deterministic (fixed seed), about 0.6 MB, F32, 2 layers.  It has:
  * an SPM ("llama") tokenizer: <unk>/<s>/</s>, all 256 byte-fallback tokens
    (so any UTF-8 text tokenizes) and a few hundred ordinary pieces;
  * BOS=1, EOS=2, add_bos_token=true;
  * a ChatML chat template (tokenizer.chat_template), so the server's
    /v1/chat/completions works without a --chat_format flag.

Generation never stops on its own before max_tokens: residual-stream
dimension 0 is held at a positive constant in every position (the embedding
sets it, no layer writes to it), and the output rows of <unk>, <s>, </s> and
every byte token are strongly negative in that dimension only, so their
logits are always around -100 while the ordinary word pieces have logits of
order 1.  Every generated token is therefore an ordinary piece that decodes
to visible text: a stream of max_tokens=N yields N content chunks.
"""

import sys

import numpy as np
import gguf

SEED = 20240613
N_EMBD = 64
N_HEAD = 4
N_HEAD_KV = 4
N_FF = 128
N_LAYER = 2
N_CTX_TRAIN = 4096
BIAS_VALUE = 4.0        # constant value of residual dimension 0
BANNED_WEIGHT = -50.0   # output weight of banned tokens on dimension 0

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

WORDS = """
the of and to in is it you that he was for on are with as his they be at one
have this from or had by hot word but what some we can out other were all
there when up use your how said an each she which do their time if will way
about many then them write would like so these her long make thing see him two
has look more day could go come did number sound no most people my over know
water than call first who may down side been now find any new work part take
get place made live where after back little only round man year came show
every good me give our under name very through just form sentence great think
say help low line differ turn cause much mean before move right boy old too
same tell does set three want air well also play small end put home read hand
port large spell add even land here must big high such follow act why ask men
change went light kind off need house picture try us again animal point mother
world near build self earth father head stand own page should country found
answer school grow study still learn plant cover food sun four between state
keep eye never last let thought city tree cross farm hard start might story
saw far sea draw left late run while press close night real life few north
""".split()


def build_vocab():
    tokens, scores, types = [], [], []

    def add(text, score, ttype):
        tokens.append(text)
        scores.append(score)
        types.append(ttype)

    T = gguf.TokenType
    add("<unk>", 0.0, T.UNKNOWN)
    add("<s>", 0.0, T.CONTROL)
    add("</s>", 0.0, T.CONTROL)
    for b in range(256):
        add(f"<0x{b:02X}>", 0.0, T.BYTE)
    n_special = len(tokens)  # 259: everything before this may never be sampled

    seen = set()
    pieces = []
    # Single characters (lets the SPM merger start from known symbols).
    pieces += list("abcdefghijklmnopqrstuvwxyz")
    pieces += list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    pieces += list("0123456789")
    pieces += list(".,!?;:'-()")
    pieces += ["\u2581"]  # SPM space marker
    pieces += ["\u2581" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    pieces += ["\u2581" + w for w in WORDS]
    score = -1.0
    for p in pieces:
        if p in seen:
            continue
        seen.add(p)
        add(p, score, T.NORMAL)
        score -= 0.01
    return tokens, scores, types, n_special


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: make_model.py OUT.gguf\n")
        return 2
    out = sys.argv[1]

    tokens, scores, types, n_special = build_vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(SEED)
    head_dim = N_EMBD // N_HEAD

    def rand(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    # numpy shape is (rows=out_features, cols=in_features); gguf reverses it.
    tok_embd = rand(n_vocab, N_EMBD, scale=1.0)
    tok_embd[:, 0] = BIAS_VALUE

    out_w = rand(n_vocab, N_EMBD, scale=0.5)
    out_w[:, 0] = 0.0
    out_w[:n_special, :] = 0.0
    out_w[:n_special, 0] = BANNED_WEIGHT

    out_norm = np.ones(N_EMBD, dtype=np.float32)

    w = gguf.GGUFWriter(out, "llama")
    w.add_name("loopchat-test-tiny-llama")
    w.add_context_length(N_CTX_TRAIN)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(n_vocab)

    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHATML_TEMPLATE)

    w.add_tensor("token_embd.weight", tok_embd)
    for i in range(N_LAYER):
        p = f"blk.{i}."
        attn_norm = np.ones(N_EMBD, dtype=np.float32)
        attn_norm[0] = 0.0  # the constant dimension carries no information
        ffn_norm = attn_norm.copy()
        attn_out = rand(N_EMBD, N_EMBD, scale=0.2)
        attn_out[0, :] = 0.0  # nothing writes to residual dimension 0
        ffn_down = rand(N_EMBD, N_FF, scale=0.2)
        ffn_down[0, :] = 0.0
        w.add_tensor(p + "attn_norm.weight", attn_norm)
        w.add_tensor(p + "attn_q.weight", rand(N_EMBD, N_EMBD, scale=0.3))
        w.add_tensor(p + "attn_k.weight", rand(N_HEAD_KV * head_dim, N_EMBD, scale=0.3))
        w.add_tensor(p + "attn_v.weight", rand(N_HEAD_KV * head_dim, N_EMBD, scale=0.3))
        w.add_tensor(p + "attn_output.weight", attn_out)
        w.add_tensor(p + "ffn_norm.weight", ffn_norm)
        w.add_tensor(p + "ffn_gate.weight", rand(N_FF, N_EMBD, scale=0.3))
        w.add_tensor(p + "ffn_up.weight", rand(N_FF, N_EMBD, scale=0.3))
        w.add_tensor(p + "ffn_down.weight", ffn_down)
    w.add_tensor("output_norm.weight", out_norm)
    w.add_tensor("output.weight", out_w)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    sys.stderr.write(f"wrote {out}: n_vocab={n_vocab} n_embd={N_EMBD} n_layer={N_LAYER}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
