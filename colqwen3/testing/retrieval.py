"""A retrieval encoder whose MaxSim scores are chosen by the test, to check metrics end to end through mteb."""

import torch

from colqwen3.evaluation.encoder import RetrievalEncoder


class FixedScoreEncoder(RetrievalEncoder):
    """Scores `scores[i, j]` for the query text `f"query {i}"` and the page image of width `page_width(j)`.

    Query `i` is the one-token vector e_i and page `j` the one-token vector `scores[:, j]`, so MaxSim reproduces
    `scores` exactly, whatever order mteb encodes them in.
    """

    def __init__(self, scores: torch.Tensor, processor):
        super().__init__(torch.nn.Linear(1, 1), processor, batch_size=4, device="cpu")
        self.scores = scores.double()

    @staticmethod
    def page_width(index: int) -> int:
        return 32 + index

    def encode_queries(self, texts, progress: bool = False) -> list:
        rows = [int(text.split()[-1]) for text in texts]
        self.queries.items += len(rows)
        return [torch.eye(len(self.scores), dtype=torch.float64)[row : row + 1] for row in rows]

    def encode_pages(self, images, progress: bool = False) -> list:
        columns = [image.width - 32 for image in images]
        self.pages.items += len(columns)
        return [self.scores[:, column][None, :] for column in columns]
