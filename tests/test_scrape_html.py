"""The html.parser tree and the CSS selector subset that the HTML sources use."""

import pytest

from pipeline.scrape.html import SelectorError, parse_html

PAGE = """<!DOCTYPE html>
<html><body>
<div id="content">
  <div class="image_thread display" id="i10">
    <a class="thumb_image" href="/images/a.jpeg"><img src="/t/a.jpeg"></a>
    <dl><dt>Tags:</dt><dd><a href="/tags/1">long hair</a></dd></dl>
  </div>
  <div class="image_thread" id="i11"><a class='thumb_image' href="/images/b.png">b</a></div>
  <ul id="thumbs2"><li data-id="1"><a href="/1">one</a><li data-id="2"><a href="/2">two</a></ul>
  <p>unclosed paragraph <span>text</span>
  <a href="?p=2" rel="next nofollow">Next</a>
</div>
</body></html>
"""


@pytest.fixture(scope="module")
def document():
    return parse_html(PAGE)


def test_class_and_compound_selectors(document):
    links = document.select("a.thumb_image")
    assert [link.get("href") for link in links] == ["/images/a.jpeg", "/images/b.png"]
    assert len(document.select("div.image_thread.display")) == 1


def test_descendant_and_child_combinators(document):
    assert [a.get("href") for a in document.select("#thumbs2 li a")] == ["/1", "/2"]
    assert len(document.select("#content > div")) == 2
    assert document.select("body > a") == []


def test_unclosed_list_items_are_siblings(document):
    items = document.select("#thumbs2 > li")
    assert [item.get("data-id") for item in items] == ["1", "2"]


def test_attribute_operators(document):
    assert len(document.select("a[rel~=next]")) == 1
    assert len(document.select('a[href^="/images/"]')) == 2
    assert len(document.select("a[href$=.png]")) == 1
    assert len(document.select("a[href*=mage]")) == 2
    assert len(document.select("li[data-id='2']")) == 1
    assert len(document.select("[data-id]")) == 2


def test_selector_groups_and_text(document):
    found = document.select("#i10, #i11")
    assert [element.get("id") for element in found] == ["i10", "i11"]
    assert document.select_one("dd").text() == "long hair"


@pytest.mark.parametrize("selector", ["a:first-child", "a >", "", "a,,b", "div ~ p"])
def test_unsupported_selectors_raise(document, selector):
    with pytest.raises(SelectorError):
        document.select(selector)
