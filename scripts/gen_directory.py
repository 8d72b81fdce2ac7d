#!/usr/bin/env python3
"""Write a synthetic academy's directory exports, for measuring `okey directory import`.

    python3 scripts/gen_directory.py OUT_DIR [--people 300000] [--units 2000]

OUT_DIR/units.csv: the Rectorat, its support centre, IT department and exams office, 5% of the
units as districts, the rest schools (a quarter secondary under the Rectorat, one in twenty of
those outside contract; the others primary under a district), each school with a valid UAI code.
OUT_DIR/people.csv: a head and a deputy per secondary school, a director per primary school, an
IEN and an ATICE per district, agents in the Rectorat's departments, and staff everywhere else
until the count is reached. Deterministic: the same arguments give the same files.
"""
import argparse
import csv
import os

LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


def uai(n):
    digits = f"{n:07d}"
    return digits + LETTERS[n % 23]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--people", type=int, default=300_000)
    ap.add_argument("--units", type=int, default=2_000)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    units = [
        ("RECTORAT", "rectorat", "Rectorat", "", ""),
        ("SUPPORT", "support_centre", "Centre de support", "RECTORAT", ""),
        ("DSI", "it_department", "DSI", "RECTORAT", ""),
        ("DEC", "exams_office", "Division des examens", "RECTORAT", ""),
    ]
    districts = max(1, (a.units - 4) // 20)
    schools = a.units - 4 - districts
    secondary = schools // 4
    for d in range(districts):
        units.append((f"CIRC-{d:03d}", "district", f"Circonscription {d}", "RECTORAT", ""))
    school_ids = []
    for s in range(schools):
        code = uai(9_740_000 + s)
        if s < secondary:
            contract = "no" if s % 20 == 19 else "yes"
            units.append((code, "school", f"Lycée {s}", "RECTORAT", contract))
            school_ids.append((code, "2d"))
        else:
            units.append((code, "school", f"École {s}", f"CIRC-{s % districts:03d}", "yes"))
            school_ids.append((code, "1d"))
    with open(os.path.join(a.out, "units.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "kind", "name", "parent", "under_contract"])
        w.writerows(units)

    people = []

    def add(unit, functions):
        n = len(people)
        people.append((f"p{n:06d}", f"Personne {n}", f"p{n:06d}@ac-example.fr", unit, functions))

    for code, degree in school_ids:
        if degree == "2d":
            add(code, "head")
            add(code, "deputy")
        else:
            add(code, "director")
    for d in range(districts):
        add(f"CIRC-{d:03d}", "ien")
        add(f"CIRC-{d:03d}", "atice")
    for _ in range(20):
        add("SUPPORT", "support")
        add("DSI", "it")
        add("DEC", "exams")
    i = 0
    while len(people) < a.people:
        code, _ = school_ids[i % len(school_ids)]
        add(code, "staff;ent" if i % 97 == 0 else "staff")
        i += 1
    with open(os.path.join(a.out, "people.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "email", "unit", "functions"])
        w.writerows(people[: a.people])
    print(f"{len(units)} units, {min(len(people), a.people)} people in {a.out}")


if __name__ == "__main__":
    main()
