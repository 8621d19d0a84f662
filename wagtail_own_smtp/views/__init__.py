"""The app's views, one module per role.

``verify``: the public confirmation link. ``server``: the status panel's buttons (test the
connection, send the confirmation again, test the mailbox). ``oauth``: "Connect account".
``outbox`` with ``outbox_table``: the outbox. ``bounces``: bounces and suppressed addresses.
``notices``: what those admin actions tell the editor. ``reports``: what the per-site reports
share.
"""
