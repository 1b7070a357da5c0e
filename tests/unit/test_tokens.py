import litellm

from graph.tokens import count_messages


def test_counts_agree_with_litellm_token_counter():
    cases = [
        [{"role": "user", "content": "Port 8080 is occupied by nginx. Fix it."}],
        [{"role": "system", "content": "You are a senior DBA."},
         {"role": "user", "content": "SELECT * FROM t WHERE x IN (SELECT y FROM u);\n" * 40}],
        [{"role": "user", "content": "Привіт, світ! 数据库 优化 🚀"}],
    ]
    for messages in cases:
        ours = count_messages(messages)
        theirs = litellm.token_counter(model="gpt-4o", messages=messages)
        # litellm encodes long text in chunks, which can split a token or two: within 1 %
        assert abs(ours - theirs) <= max(1, theirs // 100), (ours, theirs)
        assert ours > 0


def test_grows_with_the_prompt():
    short = count_messages([{"role": "user", "content": "fix"}])
    long = count_messages([{"role": "user", "content": "fix the failing deployment " * 100}])
    assert long > short + 300
