"""Events other apps react to. accounts sends them and knows nothing of who listens."""

from django.dispatch import Signal

# Sent once by accounts.services.user_suspend, after the user row says suspended, with
# ``user=<User>``. Receivers drop what the user could still be handed (tokens forgets the
# user's cached credentials); they run in the suspending request, so a failure is seen there.
user_suspended = Signal()

# Sent by accounts.identities when a guest account is created / gains a lasting way in
# (``user=<User>``), inside the creating transaction: uploads sets and lifts its small quotas.
guest_created = Signal()
guest_upgraded = Signal()

# Sent by the erasure (uploads.erasure) just before the user's rows are deleted, inside that
# transaction (``user=<User>``): apps remove or anonymise what they keep about the user.
user_erasing = Signal()
