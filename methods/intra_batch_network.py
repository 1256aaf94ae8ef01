"""The message-passing network of :mod:`methods.intra_batch` (Seidenschwarz, Elezi & Leal-Taixé, ICML 2021;
code dvl-tum/intra_batch): Transformer-encoder layers over the batch's embeddings and the classifier after
them, as that module's docstring describes; apart from the method's declaration, which imports no torch."""
from __future__ import annotations

import torch
from torch import nn


class MessagePassingLayer(nn.Module):
    """One post-norm Transformer-encoder layer over the batch (the code's ``DotAttentionLayer``)."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.feed_forward = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Dropout(dropout),
                                          nn.Linear(4 * dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        # The code's init: Xavier-uniform query, key, value and output weights, zero biases.
        for weight in self.attn.in_proj_weight.chunk(3):
            nn.init.xavier_uniform_(weight)
        nn.init.zeros_(self.attn.in_proj_bias)
        nn.init.xavier_uniform_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, d) node features → (B, d): every sample attends to every sample of the batch."""
        h = self.norm1(h + self.dropout1(self.attn(h, h, h, need_weights=False)[0]))
        return self.norm2(h + self.dropout2(self.feed_forward(h)))

    def attention(self, h: torch.Tensor) -> torch.Tensor:
        """The (H, B, B) attention weights of ``h``: row i is sample i's softmax over the batch."""
        return self.attn(h, h, h, need_weights=True, average_attn_weights=False)[1]


class MessagePassingNetwork(nn.Module):
    """Linear(d → d), L message-passing layers, BatchNorm1d (no shift), bias-free classifier."""

    def __init__(self, dim: int, num_classes: int, num_layers: int, num_heads: int, dropout: float,
                 concat_layers: bool):
        super().__init__()
        self.input = nn.Linear(dim, dim)
        self.layers = nn.ModuleList(MessagePassingLayer(dim, num_heads, dropout) for _ in range(num_layers))
        self.concat_layers = concat_layers
        out_dim = dim * num_layers if concat_layers else dim
        self.neck = nn.BatchNorm1d(out_dim)
        self.neck.bias.requires_grad_(False)
        self.classifier = nn.Linear(out_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """Class logits of each sample after message passing over the batch."""
        h, outputs = self.input(embedding), []
        for layer in self.layers:
            h = layer(h)
            outputs.append(h)
        return self.classifier(self.neck(torch.cat(outputs, dim=1) if self.concat_layers else h))
