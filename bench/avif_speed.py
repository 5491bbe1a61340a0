"""The AVIF speed the quality table takes, from bench/quality.py's figures for each speed.

The fastest speed that reaches the AVIF byte goal (AVIF_GOAL times JPEG's bytes at equal
SSIMULACRA2, at the default q) among those whose encode costs at most MAX_CPU_VS_8 times
speed 8's; if none does, the one of those that comes closest. A variant is encoded once
and served many times, so bytes outweigh a slower miss within that budget. Outputs of
4 MP or more stay at speed 8 whatever the table says (engine.LARGE_AVIF_PIXELS), where a
slower speed would take seconds and no more memory would help.

No bench-only imports: the tests check the committed table against this rule.
"""

DEFAULT_Q = 80
AVIF_GOAL = 0.65
MAX_CPU_VS_8 = 4.0


def choose_speed(speeds):
    """The fastest speed within the CPU budget that reaches the byte goal, else the closest."""
    affordable = {s: f for s, f in speeds.items() if f["cpu_vs_8"] <= MAX_CPU_VS_8}
    reaching = [s for s, f in affordable.items() if f["bytes_vs_jpeg_q80"] <= AVIF_GOAL]
    if reaching:
        return max(reaching)
    return min(affordable, key=lambda s: (affordable[s]["bytes_vs_jpeg_q80"], -s))


def speed_reason(speeds, chosen):
    parts = [
        f"speed {s}: {f['bytes_vs_8']:.3f}x the bytes of speed 8 at equal SSIMULACRA2 for "
        f"{f['cpu_vs_8']:.2f}x its encode CPU time ({f['wall_vs_8']:.2f}x wall), "
        f"AVIF {f['bytes_vs_jpeg_q80']:.3f}x JPEG's bytes at q{DEFAULT_Q}'s score"
        for s, f in sorted(speeds.items())
    ]
    rule = (
        f"the table takes the fastest speed whose AVIF is at most {AVIF_GOAL:.2f}x "
        f"JPEG's bytes, among those costing at most {MAX_CPU_VS_8:.0f}x speed 8's encode CPU time"
    )
    fig = speeds[chosen]
    if fig["bytes_vs_jpeg_q80"] <= AVIF_GOAL:
        verdict = f"speed {chosen}"
    else:
        verdict = f"none reaches it, so speed {chosen}, the closest"
    return f"{'; '.join(parts)}; {rule}: {verdict}."
