"""Write the demo's sample pages (four PNG pages and a two-page PDF) into a folder, offline."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_colqwen3  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    paths = tiny_colqwen3.write_sample_pages(args.folder)
    pdf = args.folder / "appendix.pdf"
    first, *rest = [tiny_colqwen3.make_page(["APPENDIX A", "Raw survey data", f"Table {i}"], seed=10 + i) for i in (1, 2)]
    first.save(pdf, save_all=True, append_images=rest, resolution=72)
    paths.append(pdf)
    print(f"wrote {len(paths)} files to {args.folder}: " + ", ".join(p.name for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
