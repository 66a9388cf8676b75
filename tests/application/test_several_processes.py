"""Several application instances (as several worker processes would) on one store lose nothing."""

import threading

from api.container import build


def test_two_instances_writing_one_store_keep_every_acknowledged_write(services, make_settings, store_url, add_user, actor_of):
    inv = actor_of(add_user("inv1", "investigator"))
    pids = [services.app.screen_participant(inv, screening_number=f"S-{i}", site="MINSK", sex="F", birth_year=1970)["id"] for i in range(4)]
    other = build(make_settings(store_url))
    acknowledged: list[tuple[str, int]] = []
    refused: list[str] = []
    lock = threading.Lock()

    def work(app, offset):
        for i in range(15):
            pid = pids[(i + offset) % 4]
            value = 1900 + offset * 20 + i
            try:
                app.correct_participant(inv, pid, field="birth_year", new_value=value, reason="correction from source log")
                with lock:
                    acknowledged.append((pid, value))
            except Exception as e:
                with lock:
                    refused.append(type(e).__name__)

    threads = [threading.Thread(target=work, args=(app, k)) for k, app in enumerate([services.app, other.app, services.app, other.app])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert set(refused) <= {"Conflict"}, refused
    stored = []
    for pid in pids:
        history = services.app.participant_history(inv, pid)
        assert [h["version"] for h in history] == list(range(1, len(history) + 1))
        stored += [(pid, h["changes"][0]["new_value"]) for h in history if h["type"] == "FieldCorrected"]
    assert sorted(stored) == sorted(acknowledged)
    assert len(acknowledged) + len(refused) == 60
