"""Views: what follows from a costed op graph without tracing again: memory liveness and peaks
(memory, memory_measure checks it against a real run), mixture-of-experts parameters (moe), the
KV cache a decode step reads (kvcache), layers folded into a symbolic count (fold), and the
kernels a compiler or an inference engine fuses the ops into (fusion)."""
