"""Local retrieval data: a BEIR-format folder or training rows, checked with errors that name the file, line and id."""

import json

import pytest
from PIL import Image

from colqwen3.evaluation import RetrievalData
from colqwen3.testing.pages import BEIR_PAGES, BEIR_QUERIES, write_beir_folder


@pytest.fixture
def folder(tmp_path):
    return write_beir_folder(tmp_path / "my_pages")


def test_folder_reads_back_what_was_written(folder):
    data = RetrievalData.from_beir_folder(folder)
    assert data.name == "MyPages" and set(data.corpus) == set(BEIR_PAGES) and set(data.queries) == set(BEIR_QUERIES)
    assert data.qrels["q-italy"] == {"rome": 2, "paris": 1, "costs": 0}
    assert data.queries["q-france"] == "what is the capital of France"
    assert all(path.is_file() for path in data.corpus.values())


def test_other_beir_column_names_and_qrels_location(folder):
    rows = [json.loads(line) for line in (folder / "queries.jsonl").read_text().splitlines()]
    (folder / "queries.jsonl").write_text(
        "\n".join(json.dumps({"query-id": r["_id"], "query": r["text"]}) for r in rows)
    )
    (folder / "qrels/test.tsv").rename(folder / "qrels.tsv")
    assert RetrievalData.from_beir_folder(folder).queries["q-total"] == "how much is due on the invoice"


def rewrite(path, edit):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda f: (f / "corpus.jsonl").unlink(), r"corpus.jsonl is missing"),
        (lambda f: (f / "corpus.jsonl").write_text(""), r"the corpus is empty"),
        (
            lambda f: rewrite(f / "queries.jsonl", lambda ls: ls[:1] + ['{"_id": "q9", "txt": "typo"}']),
            r"queries.jsonl line 2: missing column text / query \(has \['_id', 'txt'\]\)",
        ),
        (
            lambda f: rewrite(f / "corpus.jsonl", lambda ls: ls + ['{"image": "images/paris.png"}']),
            r"corpus.jsonl line 7: missing column _id / corpus-id / id",
        ),
        (lambda f: rewrite(f / "corpus.jsonl", lambda ls: ls + ["{not json"]), r"corpus.jsonl line 7: not JSON"),
        (lambda f: (f / "images/rome.png").unlink(), r"corpus.jsonl line 6: image .*rome.png does not exist"),
        (
            lambda f: rewrite(f / "qrels/test.tsv", lambda ls: ls + ["q-nobody\tparis\t1", "q-total\tp-ghost\t1"]),
            r"qrels name ids that are not in the data: queries \['q-nobody'\], pages \['p-ghost'\]",
        ),
        (lambda f: rewrite(f / "qrels/test.tsv", lambda ls: ls + ["q-total\tparis\thigh"]), r"score 'high' is not"),
        (lambda f: rewrite(f / "qrels/test.tsv", lambda ls: ls + ["q-total paris 1"]), r"tab-separated"),
        (lambda f: (f / "qrels/test.tsv").unlink(), r"no qrels file; expected one of qrels/test.tsv, qrels.tsv"),
        (
            lambda f: rewrite(f / "qrels/test.tsv", lambda ls: [ls[0]] + [line[:-1] + "0" for line in ls[1:]]),
            r"no query has a relevant page",
        ),
        (
            lambda f: rewrite(f / "queries.jsonl", lambda ls: ls + ['{"_id": "q-blank", "text": "  "}']),
            r"query 'q-blank' has no text",
        ),
    ],
    ids=[
        "no-corpus-file",
        "empty-corpus",
        "query-column",
        "page-id-column",
        "bad-json",
        "missing-image",
        "unknown-ids",
        "bad-score",
        "qrels-columns",
        "no-qrels",
        "no-relevant",
        "blank-query",
    ],
)
def test_bad_folders_give_clear_errors(folder, damage, match):
    damage(folder)
    with pytest.raises(ValueError, match=match):
        RetrievalData.from_beir_folder(folder)


def test_not_a_folder(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        RetrievalData.from_beir_folder(tmp_path / "nowhere")


def test_in_memory_checks():
    page = Image.new("RGB", (32, 32))
    with pytest.raises(ValueError, match=r"qrels\['q'\]\['p'\] must be an integer >= 0, got -1"):
        RetrievalData({"q": "x"}, {"p": page}, {"q": {"p": -1}})
    with pytest.raises(TypeError, match="page 'p' must be a PIL image or a path, got str"):
        RetrievalData({"q": "x"}, {"p": "page.png"}, {"q": {"p": 1}})
    with pytest.raises(ValueError, match="there are no queries"):
        RetrievalData({}, {"p": page}, {})


def test_training_rows_become_one_relevant_page_per_query():
    rows = [{"query": f"q {i}", "image": Image.new("RGB", (32, 32))} for i in range(3)]
    data = RetrievalData.from_examples(rows)
    assert data.qrels == {"q0": {"p0": 1}, "q1": {"p1": 1}, "q2": {"p2": 1}} and data.queries["q2"] == "q 2"
