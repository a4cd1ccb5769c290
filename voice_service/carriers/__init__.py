"""The process's telephony carrier clients and the URLs carriers call back on (below every domain that places,
answers or streams calls; the carriers' wire formats live in providers/telephony)."""
