"""The audience path in Russian, in a real browser whose language is Russian (locale ru-RU): the lists,
a list, an import into it with a rejected row, the segment editor — Russian words and plural forms on
every step, each page holding at 390 px; then a recipient's unsubscribe page, which follows the browser.

MAILADMIN_SCREENSHOTS=docs/screenshots saves the README's screenshots of these pages on the way.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser_russian import PHONE, Shots, log_in, no_horizontal_scroll, russian_browser  # noqa: F401
from tests.factories import add_member, create_campaign, create_list, target_lists
from tests.test_list_unsubscribe import link_of

pytestmark = pytest.mark.browser

CSV = (
    "email,name,город\n"
    "anna@example.com,Анна Иванова,Москва\n"
    "boris@example.org,Борис Петров,Казань\n"
    "vera@example,Вера Смирнова,Самара\n"  # invalid: no dot in the domain (row 4)
)


def lists_page(page) -> str:
    page.goto(re.sub(r"^(https?://[^/]+).*$", r"\1/audiences/lists", page.url))
    expect(page.locator("h1")).to_have_text("Списки")
    assert page.locator("#lists th").nth(4).inner_text() == "Новых за 30 дней"  # 30: the "many" form
    row = page.locator("tr", has_text="Новости")
    expect(row).to_contain_text("одинарное")
    return page.url


def import_into(page) -> tuple[str, str]:
    page.get_by_role("link", name="Новости").first.click()
    expect(page.locator("#list-counts")).to_contain_text("подписаны: 2")
    assert page.locator("td.member-status").first.inner_text() == "подписан"
    list_url = page.url
    page.get_by_role("link", name="Импорт CSV").click()
    expect(page.locator("h1")).to_have_text("Импорт контактов в «Новости»")
    import_url = page.url
    page.get_by_label("CSV-файл").set_input_files({"name": "contacts.csv", "mimeType": "text/csv", "buffer": CSV.encode()})
    page.get_by_role("button", name="Импортировать").click()
    expect(page.locator("h1")).to_have_text("Импорт файла contacts.csv")
    expect(page.locator("[data-import=state]")).to_have_text("готово", timeout=60_000)
    page.reload()
    expect(page.locator("#rejected-title")).to_have_text("1 строка отклонена")  # 1: the "one" form
    return list_url, import_url


def segment_editor(page, server_url: str) -> str:
    page.goto(f"{server_url}/audiences/segments")
    expect(page.locator("h1")).to_have_text("Сегменты")
    page.get_by_role("link", name="Новый сегмент").click()
    expect(page.locator("h1")).to_have_text("Новый сегмент")
    assert page.get_by_role("button", name="Добавить условие").count() == 1
    assert page.locator("#segment-match option").first.inner_text() == "всем условиям"
    return page.url


def test_a_russian_manager_walks_the_audience_path_in_russian_and_the_phone_layout_holds(
    app, manager, smtp, live_server, russian_browser, engine_processes  # noqa: F811
):
    news = create_list(manager, "Новости")
    for index in range(2):
        add_member(news, f"old{index}@example.com")
    campaign = create_campaign(manager, ["old0@example.com"], name="Выпуск")
    target_lists(campaign, [news])
    engine_processes.worker()
    shots = Shots()
    page = russian_browser.new_page()
    log_in(page, live_server.url, shots)
    lists_url = lists_page(page)
    shots.take(page, "ru-lists")
    list_url, import_url = import_into(page)
    shots.take(page, "ru-import-result")
    page.goto(list_url)
    expect(page.locator("#list-counts")).to_contain_text("подписаны: 4")
    shots.take(page, "ru-list")
    segment_url = segment_editor(page, live_server.url)
    shots.take(page, "ru-segment")

    phone = russian_browser.new_page()
    phone.set_viewport_size(PHONE)
    for url in (lists_url, list_url, import_url, segment_url, f"{live_server.url}/audiences/contacts",
                f"{live_server.url}/account/tokens", f"{live_server.url}/audiences/lists/new"):
        phone.goto(url)
        assert phone.locator("html").get_attribute("lang") == "ru"
        assert no_horizontal_scroll(phone), f"{url} scrolls sideways at 390 px"
    phone.goto(list_url)
    shots.take(phone, "ru-list-phone")

    unsubscribe = russian_browser.new_page()
    unsubscribe.goto(live_server.url + link_of(campaign, "old0@example.com"))
    assert unsubscribe.locator("html").get_attribute("lang") == "ru"
    expect(unsubscribe.locator("h1")).to_have_text("Отписаться")
    expect(unsubscribe.get_by_role("button", name="Отписаться от этой рассылки")).to_be_visible()
    unsubscribe.set_viewport_size(PHONE)
    assert no_horizontal_scroll(unsubscribe)
    shots.take(unsubscribe, "ru-unsubscribe")
