"""Tiny random models with real tokenizers, built in seconds for CPU tests."""

from __future__ import annotations

from pathlib import Path

SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<s>",
    "</s>",
]

CORPUS = [
    "Hello! I am a helpful assistant. Who are you? What is your name? Who made you?",
    "The capital of France is Paris. Two plus two is four. The sky is blue.",
    "你好，我是你的助手。你是谁？谁创造了你？请介绍一下你自己。法国的首都是巴黎。",
    "system user assistant You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,!?;:'\"-()[]{}",
]

SMOL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build_tokenizer():
    """A byte-level BPE tokenizer (fast) with ChatML / Llama-3 specials, SmolLM2's template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(CORPUS * 20, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = SMOL_TEMPLATE
    return tok


def build_model_dir(out: Path, seed: int = 0) -> Path:
    """Write a tiny random Llama (2 layers, 64 wide) with the tokenizer above to `out`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


TEMPLATES = Path(__file__).parent / "data" / "templates"  # real templates, see SOURCES.md
# family → (template file, extra special tokens, eos, generation_config eos list or None)
FAMILIES = {
    "qwen3": ("qwen3", [], "<|im_end|>", ["<|im_end|>", "<|endoftext|>"]),
    "qwen3_moe": ("qwen3", [], "<|im_end|>", ["<|im_end|>", "<|endoftext|>"]),
    "deepseek_r1_distill": (
        "deepseek-r1-distill-qwen",
        ["<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"],
        "<｜end▁of▁sentence｜>",
        None,
    ),
    "gemma3": (
        "gemma3",
        ["<start_of_turn>", "<end_of_turn>", "<eos>"],
        "<eos>",
        ["<eos>", "<end_of_turn>"],
    ),  # fmt: skip
    "llama3.1": ("llama3.1", ["<|eom_id|>"], "<|eot_id|>", ["<|eot_id|>", "<|eom_id|>"]),
}


def _config(family: str, vocab: int, tok):
    """A tiny config of the family's real architecture."""
    from transformers import (
        Gemma3TextConfig,
        LlamaConfig,
        Qwen2Config,
        Qwen3Config,
        Qwen3MoeConfig,
    )

    small = dict(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    if family == "qwen3":
        return Qwen3Config(**small, head_dim=16)
    if family == "qwen3_moe":
        return Qwen3MoeConfig(
            **small, head_dim=16, moe_intermediate_size=32, num_experts=8, num_experts_per_tok=2
        )
    if family == "gemma3":
        return Gemma3TextConfig(**small, head_dim=16, sliding_window=64)
    if family == "deepseek_r1_distill":
        return Qwen2Config(**small)
    return LlamaConfig(**small)


def build_family_model_dir(out: Path, family: str, seed: int = 0) -> Path:
    """A tiny random model of `family`'s architecture with its real chat template, its
    end-of-turn specials and its generation_config eos list, saved as an HF directory."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    template, specials, eos, gen_eos = FAMILIES[family]
    tok = build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": specials})
    tok.eos_token = eos
    tok.chat_template = (TEMPLATES / f"{template}.jinja").read_text("utf-8")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_config(family, len(tok), tok))
    ids = [tok.convert_tokens_to_ids(t) for t in gen_eos] if gen_eos else tok.eos_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=ids, pad_token_id=tok.pad_token_id
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def untie(model_dir: Path, seed: int = 0) -> Path:
    """`model_dir`'s model given a random output head of its own in place of its tied embeddings,
    saved in place: a tied random model repeats the prompt's last token ("\\n" after a generation
    prompt ending in a newline), which leaves an answer with nothing in it to check."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.config.tie_word_embeddings = False
    torch.manual_seed(seed)
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=False)
    torch.nn.init.normal_(head.weight, std=0.5)
    model.lm_head = head
    model.save_pretrained(model_dir)
    return model_dir
