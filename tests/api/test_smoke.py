def test_health_needs_no_token(client):
    assert client.get("/health").json() == {"status": "ok"}


def test_randomised_participant_fixture(randomised_participant, client):
    pid, headers = randomised_participant()
    body = client.get(f"/participants/{pid}", headers=headers).json()
    assert body["status"] == "randomised" and body["arm"] in ("treg_plus_standard", "standard")
