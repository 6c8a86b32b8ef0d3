"""Tiny offline models for tests: a word-level tokenizer and small Llama models (random or hand-set)
wrapped by TransformerLens' bridge exactly as real models are. No download, a second each."""

from __future__ import annotations

import tempfile
from functools import cache

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from neurosleuth.tools.model import LoadedModel, from_hf_model

WORDS = (
    "<pad> <bos> <unk> the a cat dog sat on mat . , ran to park and is in paris france tower "
    "eiffel def return x y + = ( ) : if else for i print hello world red blue green big small "
    "one two three four five happy sad code python king queen man woman of was it he she they"
).split()


@cache
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over WORDS, saved and reloaded so it has a path (the bridge
    wants one)."""
    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<bos>",
        unk_token="<unk>",
        eos_token="<pad>",
    )
    folder = tempfile.mkdtemp(prefix="neurosleuth-tok-")
    fast.save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def tiny_config(
    n_layers: int = 2, d_model: int = 16, d_mlp: int = 32, n_heads: int = 2
) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(WORDS),
        hidden_size=d_model,
        intermediate_size=d_mlp,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=0,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )


def tiny_random_lm(seed: int = 0, prepend_bos: bool = False, dtype: torch.dtype = torch.float32,
                   **cfg) -> LoadedModel:
    torch.manual_seed(seed)
    hf = LlamaForCausalLM(tiny_config(**cfg)).eval()
    for p in hf.parameters():  # parameters only: rotary frequencies stay float32, as HF keeps them
        p.data = p.data.to(dtype)
    return from_hf_model(hf, tiny_tokenizer(), name=f"tiny-random-{seed}", prepend_bos=prepend_bos)


def token_id(word: str) -> int:
    return WORDS.index(word)
