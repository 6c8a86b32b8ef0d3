"""Tiny random models of ten common architectures, built from ``transformers`` configs and saved as
local Hugging Face folders (the load path a researcher's own checkpoint takes). Half use a
tokenizer that adds BOS, half one that does not. Two layers, d_mlp 32: a second to build each."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch
import transformers as T
from tokenizers import ByteLevelBPETokenizer, processors
from transformers import PreTrainedTokenizerFast

from tests.agent_helpers import CORPUS

D_MLP = 32
VOCAB = 400  # the BPE's size (its embedding rows; the trained vocabulary may be smaller)
_COMMON = dict(vocab_size=VOCAB, pad_token_id=0, bos_token_id=1, eos_token_id=0)
_LLAMA_LIKE = dict(hidden_size=16, intermediate_size=D_MLP, num_hidden_layers=2,
                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
_HEAD_DIM = dict(_LLAMA_LIKE, head_dim=8)

# name: (config, model class, tokenizer adds BOS)
ARCHITECTURES: dict[str, tuple[T.PretrainedConfig, type, bool]] = {
    "gpt2": (T.GPT2Config(n_positions=64, n_embd=16, n_layer=2, n_head=2, n_inner=D_MLP,
                          **_COMMON), T.GPT2LMHeadModel, False),
    "gpt_neox": (T.GPTNeoXConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=D_MLP, max_position_embeddings=64, **_COMMON),
                 T.GPTNeoXForCausalLM, False),
    "gemma2": (T.Gemma2Config(**_HEAD_DIM, **_COMMON), T.Gemma2ForCausalLM, True),
    "gemma3": (T.Gemma3TextConfig(**_HEAD_DIM, **_COMMON), T.Gemma3ForCausalLM, True),
    "qwen2": (T.Qwen2Config(**_LLAMA_LIKE, **_COMMON), T.Qwen2ForCausalLM, False),
    "qwen3": (T.Qwen3Config(**_HEAD_DIM, **_COMMON), T.Qwen3ForCausalLM, False),
    "mistral": (T.MistralConfig(**_LLAMA_LIKE, **_COMMON), T.MistralForCausalLM, True),
    "phi3": (T.Phi3Config(**dict(_LLAMA_LIKE, num_key_value_heads=2), **_COMMON),
             T.Phi3ForCausalLM, False),
    "olmo2": (T.Olmo2Config(**_LLAMA_LIKE, **_COMMON), T.Olmo2ForCausalLM, True),
    "llama": (T.LlamaConfig(**_LLAMA_LIKE, **_COMMON), T.LlamaForCausalLM, True),
}


@cache
def bpe_tokenizer(adds_bos: bool) -> PreTrainedTokenizerFast:
    """A byte-level BPE (as GPT-2, Llama-3 and Qwen use) trained on the test corpus; with
    ``adds_bos`` a post-processor prepends ``<bos>`` as Llama's and Gemma's tokenizers do. Every
    architecture's own tokenizer class reads it back unchanged (Qwen2's re-splits anything else)."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1, show_progress=False,
                            special_tokens=["<pad>", "<bos>", "<unk>"])
    if adds_bos:
        bpe._tokenizer.post_processor = processors.TemplateProcessing(
            single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 1)]
        )
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, pad_token="<pad>",
                                   bos_token="<bos>", unk_token="<unk>", eos_token="<pad>")


def save_architecture(name: str, folder: Path, seed: int = 0) -> Path:
    """A random ``name`` model and its tokenizer saved in ``folder`` (float32 weights)."""
    config, cls, adds_bos = ARCHITECTURES[name]
    config.architectures = [cls.__name__]
    torch.manual_seed(seed)
    cls(config).save_pretrained(folder)
    bpe_tokenizer(adds_bos).save_pretrained(folder)
    return folder
