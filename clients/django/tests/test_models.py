"""A model with a FileField on nanocdn: saved, read back and deleted."""

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import TestCase

from tests import live
from tests.models import Document, Receipt


class FileFieldTests(TestCase):
    def test_save_read_back_and_delete(self):
        doc = Document(title="Invoice")
        doc.file.save("invoice 42.pdf", ContentFile(b"%PDF-1.4 invoice"), save=True)
        # generate_filename made the name valid, and the node prefixed it.
        self.assertEqual(doc.file.name, "1/pub/docs/invoice_42.pdf")

        again = Document.objects.get(pk=doc.pk)
        self.assertEqual(again.file.name, "1/pub/docs/invoice_42.pdf")
        self.assertEqual(again.file.size, 16)
        self.assertEqual(again.file.url, live.node("1").url + "/1/pub/docs/invoice_42.pdf")
        with again.file.open("rb") as f:
            self.assertEqual(f.read(), b"%PDF-1.4 invoice")
        with again.file.open("rb") as f:  # closed, then opened again: fetched again
            self.assertEqual(f.read(4), b"%PDF")
        self.assertTrue(default_storage.exists(again.file.name))

        again.file.delete(save=True)
        self.assertFalse(default_storage.exists("1/pub/docs/invoice_42.pdf"))
        self.assertEqual(Document.objects.get(pk=doc.pk).file.name, "")

    def test_create_with_content_and_same_file_name_twice(self):
        a = Document.objects.create(title="a", file=ContentFile(b"A", name="same.txt"))
        b = Document.objects.create(title="b", file=ContentFile(b"B", name="same.txt"))
        self.assertEqual(a.file.name, "1/pub/docs/same.txt")
        self.assertRegex(b.file.name, r"^1/pub/docs/same_[A-Za-z0-9]{7}\.txt$")
        self.assertEqual(Document.objects.get(pk=a.pk).file.read(), b"A")
        self.assertEqual(Document.objects.get(pk=b.pk).file.read(), b"B")
        for doc in (a, b):
            doc.file.delete()

    def test_stored_name_fits_max_length(self):
        r = Receipt.objects.create(file=ContentFile(b"r", name="a-very-long-receipt-name-from-the-shop.txt"))
        self.assertLessEqual(len(r.file.name), 40)
        self.assertTrue(r.file.name.startswith("1/pub/r/a-very-long"))
        self.assertEqual(Receipt.objects.get(pk=r.pk).file.read(), b"r")
        r.file.delete()
