"""Languages (SPEC "Languages") on the audience side: the lists, a list, its import page, the segment
editor and the API-token page in Russian; the recipients' pages (subscription form, confirm link,
unsubscribe, preferences) and the double opt-in mail in the language of the person's browser."""

from __future__ import annotations

import re

import pytest

from mailadmin.extensions import get_settings
from mailadmin.mail.unsubscribe import make_preferences_token
from tests import factories
from tests.factories import add_member, create_campaign, create_list, recipient_of, target_lists
from tests.support.forms import csrf_token_from
from tests.support.jobs import run_queued_jobs
from tests.support.web import flashes, logged_in_client
from tests.test_list_unsubscribe import link_of
from tests.test_subscription_forms import confirm_path, sign_up

RU = "ru-RU,ru;q=0.9,en;q=0.5"


def _russian_manager_client(app):
    client = logged_in_client(app, factories.MANAGER_EMAIL)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = RU
    return client


def test_the_audience_pages_answer_in_russian(app, manager):
    news = create_list(manager, "Новости")
    for index in range(2):
        add_member(news, f"m{index}@example.com")
    add_member(news, "later@example.com", status="unconfirmed")
    client = _russian_manager_client(app)

    pages = {
        "/audiences/lists": ("<h1>Списки</h1>", "Новый список", "Новых за 30 дней", "одинарное"),
        f"/audiences/lists/{news.id}": ("подписаны: 2", "не подтвердили: 1",
                                         "Добавить подписчика", ">подписан<", ">не подтвердил<"),
        f"/audiences/lists/{news.id}/import": ("Импорт контактов в «Новости»", "Существующие контакты",
                                                "Обновить атрибуты"),
        "/audiences/contacts": ("<h1>Контакты</h1>", "Поиск контактов"),
        "/audiences/segments": ("<h1>Сегменты</h1>", "Новый сегмент"),
        "/audiences/segments/new": ("Добавить условие", "Пересчитать", "всем условиям"),
        "/account/tokens": ("<h1>API-токены</h1>", "Новый токен", "Срок действия (дней)"),
        "/account/password": ("<h1>Сменить пароль</h1>", "Новый пароль ещё раз"),
    }
    for path, phrases in pages.items():
        page = client.get(path).get_data(as_text=True)
        assert '<html lang="ru">' in page, path
        for phrase in phrases:
            assert phrase in page, (path, phrase)


def test_audience_flashes_come_in_russian(app, manager):
    client = _russian_manager_client(app)
    token = csrf_token_from(client.get("/audiences/lists/new").get_data(as_text=True))
    answer = client.post("/audiences/lists/new", data={"csrf_token": token, "name": "Акции", "opt_in": "single"},
                         follow_redirects=True)
    assert ("success", "Список «Акции» создан.") in flashes(answer.get_data(as_text=True))


def test_the_unsubscribe_and_preference_pages_follow_the_browser(app, client, manager):
    news, offers = create_list(manager, "Новости"), create_list(manager, "Акции")
    jane = add_member(news, "jane@example.com")
    add_member(offers, "jane@example.com")
    campaign = create_campaign(manager, ["jane@example.com"], name="Выпуск")
    target_lists(campaign, [news])
    assert recipient_of(campaign, "jane@example.com") is not None

    page = client.get(link_of(campaign, "jane@example.com"), headers={"Accept-Language": RU}).get_data(as_text=True)
    assert '<html lang="ru">' in page and "Отписаться от этой рассылки" in page and "Отписаться от всего" in page
    english = client.get(link_of(campaign, "jane@example.com"), headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Unsubscribe from this list" in english

    preferences = f"/p/{make_preferences_token(get_settings().secret_key, jane.id)}"
    saved = client.post(preferences, data={}, headers={"Accept-Language": RU}).get_data(as_text=True)
    assert "Сохранено: 2 изменения." in saved  # both switches off: two changes, the 2-4 form
    assert "Ссылка для отписки недействительна" in client.get("/u/broken", headers={"Accept-Language": RU}).get_data(
        as_text=True)


def test_a_sign_up_from_a_russian_browser_gets_the_form_the_thanks_and_the_mail_in_russian(
        app, app_env, client, manager, smtp):
    news = create_list(manager, "Новости", opt_in="double", published=True)
    form = client.get(f"/subscribe/{news.public_id}", headers={"Accept-Language": RU}).get_data(as_text=True)
    assert "Подписка на «Новости»" in form and "Мы пришлём письмо со ссылкой для подтверждения." in form

    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = RU
    thanks = sign_up(client, news, "ivan@example.com").get_data(as_text=True)
    assert "<h1>Спасибо</h1>" in thanks and "Проверьте почту" in thanks

    run_queued_jobs(app_env["REDIS_URL"])
    [mail] = smtp.messages
    body = mail.parsed().get_content()
    assert mail.subject == "Подтвердите подписку на «Новости»"
    assert "Подтвердите, что хотите получать письма рассылки «Новости»" in body
    assert "Ссылка действует 7 дней." in body  # 7: the "many" form
    assert "Подтвердите подписку" in client.get(confirm_path(mail)).get_data(as_text=True)


def test_a_sign_up_from_an_english_or_unknown_browser_gets_the_mail_in_english(app, app_env, client, manager, smtp):
    news = create_list(manager, "News", opt_in="double", published=True)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "de-DE"
    sign_up(client, news, "hans@example.com")
    run_queued_jobs(app_env["REDIS_URL"])
    [mail] = smtp.messages
    assert mail.subject == "Please confirm your subscription to News"
    assert "The link works for 7 days." in mail.parsed().get_content()
    assert re.search(r"/subscribe/confirm/", mail.parsed().get_content())


def test_a_segment_refusal_names_its_condition_in_russian_and_the_api_stays_english(app, manager):
    from mailadmin.i18n import select_locale
    from mailadmin.services.audiences.segment_filter import SegmentFilterError, validate_filter

    bad = {"match": "all", "conditions": [{"field": "attribute", "name": "seats", "op": "gt", "value": "many"}]}
    with app.test_request_context("/audiences/segments/new", headers={"Accept-Language": "ru"}):
        with pytest.raises(SegmentFilterError) as refused:
            validate_filter(bad, lambda list_id: True)
        assert refused.value.message == "Условие 1: для «'seats' больше» нужно число"
    with app.test_request_context("/api/v1/segments", headers={"Accept-Language": "ru"}):
        assert select_locale() == "en"  # problem details are an interface

    client = logged_in_client(app, factories.MANAGER_EMAIL)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "ru"
    editor = client.get("/audiences/segments/new").get_data(as_text=True)
    assert "атрибут равен" in editor and "как число" in editor and "Новое условие" in editor


def test_a_message_an_import_job_stored_in_english_is_shown_in_the_viewers_language(app):
    from mailadmin.i18n import stored_message

    with app.test_request_context(headers={"Accept-Language": "ru"}):
        assert stored_message("The file is empty: nothing to import.") == "Файл пуст: импортировать нечего."
        assert stored_message("100%x@example: not an address") == "100%x@example: not an address"  # never %-formatted


def test_an_imports_wrong_width_row_is_explained_in_russian_and_the_rejected_file_stays_english(
        app, app_env, manager):
    import io

    from mailadmin.services.audiences.import_store import FileKind, chunks
    from mailadmin.services.audiences.imports import begin_import

    news = create_list(manager, "Новости")
    data = b"email,name,plan\nann@example.com,Ann,pro\nbob@example.com,Bob,pro,extra\n"
    record = begin_import(manager, news.id, io.BytesIO(data), "people.csv", "update", "subscribed")
    run_queued_jobs(app_env["REDIS_URL"])
    client = _russian_manager_client(app)

    page = client.get(f"/audiences/imports/{record.id}").get_data(as_text=True)
    assert "ячеек в строке: 4, а столбцов в заголовке: 3" in page and "the header names" not in page
    rejected = b"".join(chunks(record.id, FileKind.REJECTED)).decode()
    assert "3,it has 4 cells; the header names 3 columns,bob@example.com" in rejected
    english = logged_in_client(app, factories.MANAGER_EMAIL).get(f"/audiences/imports/{record.id}")
    assert "it has 4 cells; the header names 3 columns" in english.get_data(as_text=True)


def test_a_stored_message_with_values_is_filled_in_for_the_viewer_and_old_english_rows_still_show(app):
    from mailadmin.i18n import stored_english, stored_form, stored_message

    stored = stored_form("the name is %(length)s characters long (at most %(most)s)", length=1204, most=200)
    assert stored_english(stored) == "the name is 1,204 characters long (at most 200)"
    with app.test_request_context(headers={"Accept-Language": "ru"}):
        assert stored_message(stored) == "длина имени — 1\xa0204 симв. (не больше 200)"
        assert stored_message("it has 4 cells; the header names 3 columns") == "it has 4 cells; the header names 3 columns"
        assert stored_english("an old row's reason") == "an old row's reason"


def test_the_log_in_prompt_comes_in_the_browsers_language(client):
    answer = client.get("/audiences/lists", headers={"Accept-Language": "ru"}, follow_redirects=True)
    assert ("info", "Войдите, чтобы открыть эту страницу.") in flashes(answer.get_data(as_text=True))


def test_the_pager_of_a_list_speaks_russian(app, manager):
    from mailadmin.services.audiences.bounds import MEMBERS_PER_PAGE

    news = create_list(manager, "Новости")
    for index in range(MEMBERS_PER_PAGE + 1):
        add_member(news, f"m{index}@example.com")
    client = _russian_manager_client(app)
    first = client.get(f"/audiences/lists/{news.id}").get_data(as_text=True)
    second = client.get(f"/audiences/lists/{news.id}?page=2").get_data(as_text=True)
    assert "Страница 1" in first and "Старее →" in first
    assert "← Новее" in second and "Страница 2" in second


def test_a_contacts_page_writes_its_codes_as_russian_words(app, manager):
    from tests.support.forms import csrf_token_from as token_of

    news = create_list(manager, "Новости")
    jane = add_member(news, "jane@example.com")
    client = _russian_manager_client(app)
    list_page = client.get(f"/audiences/lists/{news.id}").get_data(as_text=True)
    client.post(f"/audiences/lists/{news.id}/members/{jane.id}/status",
                data={"csrf_token": token_of(list_page), "status": "unconfirmed"})
    page = client.get(f"/audiences/contacts/{jane.id}").get_data(as_text=True)
    assert "подписан → не подтвердил (вручную)" in page and "Не в стоп-листе." in page


def test_an_import_stopped_by_an_unreadable_row_says_so_in_the_viewers_language(app, app_env, manager):
    import io

    from mailadmin.services.audiences.imports import begin_import

    news = create_list(manager, "Новости")
    oversized_cell = b"x" * (1024 * 1024 + 10)  # past csv's cell limit: the file stops at that row
    data = b"email,name\nann@example.com,Ann\nbob@example.com," + oversized_cell + b"\n"
    record = begin_import(manager, news.id, io.BytesIO(data), "people.csv", "update", "subscribed")
    run_queued_jobs(app_env["REDIS_URL"])

    russian = _russian_manager_client(app)
    page = russian.get(f"/audiences/imports/{record.id}").get_data(as_text=True)
    assert "Строку 3 не удаётся прочитать как CSV" in page and "cannot be read" not in page
    progress = russian.get(f"/audiences/imports/{record.id}/progress.json").get_json()
    assert progress["state"] == "failed" and progress["message"].startswith("Строку 3 не удаётся прочитать как CSV")
    english = logged_in_client(app, factories.MANAGER_EMAIL).get(f"/audiences/imports/{record.id}")
    assert "Row 3 cannot be read as CSV" in english.get_data(as_text=True)
