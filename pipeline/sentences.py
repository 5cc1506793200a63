"""Documents -> sentences (spans of their text), with sentencex (Wikimedia's rule-based segmenter, in Rust).

Why sentencex: it needs no model download (NLTK's punkt, spaCy and wtpsplit do, which an offline
machine cannot), knows abbreviations, quotes and terminators in some 30 languages (Chinese and
Japanese 。！？ without spaces), and of the installable segmenters it was the most accurate on our
golden-rules cases in German, Chinese, Russian and Greek, close to the best in English and Japanese,
and the fastest (benchmarks/segmenters.py): faster than the English rules it replaced, 200x pysbd.
"""

import re

import sentencex

# sentencex 1.0.32 panics (a Rust slice inside a character) on a capital, a multi-byte space and a stop, as in
# "X\u2009." or "Y\u00a0."; one ASCII space per such character keeps every offset the same.
_WIDE_SPACE = re.compile("[" + "".join(chr(c) for c in range(0x80, 0x3001) if chr(c).isspace()) + "]")
# sentencex keeps German ordinal dates with a full month name together ("am 3. Oktober"), but splits one after a
# comma ("Montag, 3. Oktober") and any with an abbreviated month ("am 3. Okt."); rejoined here.
_GERMAN_DAY = re.compile(r"(?<!\S)\d{1,2}\.\s*$")
_GERMAN_MONTH = re.compile(r"\s*(?:Januar|Jänner|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|November|"
                           r"Dezember|Jan|Feb|Febr|Mär|Apr|Jun|Jul|Aug|Sep|Sept|Okt|Nov|Dez)\b")


# sentencex honours quotes and emphasis marks, never ending a sentence inside them. Paired wrongly (a bullet "* "
# before "*emphasis*", a stray quote in scraped text), they can span a whole section as one "sentence"; a span this
# long that holds such marks is split again with them blanked out (same length, so offsets stay).
MAX_QUOTED_SPAN = 400
_QUOTE = re.compile(r"""["'*`“”‘’«»„‚‹›()\[\]{}「」『』]""")


def _spans(text: str, language: str) -> list[list[int]]:
    spans, start = [], 0
    for piece in sentencex.segment(language, text):
        found = text.find(piece, start)  # past 10 KB, sentencex drops the blank lines between paragraphs
        if found < 0:  # a piece that is not the text's own (never seen): keep the rest whole rather than guess
            spans.append([start, len(text)])
            break
        spans.append([found, found + len(piece)])
        start = found + len(piece)
    return spans


def split_sentences(text: str, language: str = "en") -> list[str]:
    """Splits one document's text into sentences; whitespace inside a sentence is kept as is.

    Args:
        text: A paragraph or document.
        language: ISO 639-1 code of the text's language; sentencex uses English rules for one it does not know.

    Returns:
        The sentences, stripped, none empty: each is a substring of `text`, in order.
    """
    safe = text if text.isascii() or not _WIDE_SPACE.search(text) else _WIDE_SPACE.sub(" ", text)
    spans = []
    for a, b in _spans(safe, language):
        if b - a > MAX_QUOTED_SPAN and _QUOTE.search(safe, a, b):
            spans += [[a + x, a + y] for x, y in _spans(_QUOTE.sub(" ", safe[a:b]), language)]
        else:
            spans.append([a, b])
    if language.split("-")[0] == "de":
        for i in range(len(spans) - 1, 0, -1):
            if _GERMAN_DAY.search(text, *spans[i - 1]) and _GERMAN_MONTH.match(text, spans[i][0]):
                spans[i - 1][1] = spans.pop(i)[1]
    return [sentence for a, b in spans if (sentence := text[a:b].strip())]
